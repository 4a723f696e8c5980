"""Core ledger and business rules (no platform, web or UI imports)."""
