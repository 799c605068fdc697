"""Prune4ReL (being written)."""
