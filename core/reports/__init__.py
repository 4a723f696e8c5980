"""Report computations for the scheduled jobs: risk items, turnover, the health metrics and the hit-rate board."""
