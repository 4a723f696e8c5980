"""Scheduled work's ledger: which job ran for which business period, claimed once."""
