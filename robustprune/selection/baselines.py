"""Signal-based baselines (being written)."""
