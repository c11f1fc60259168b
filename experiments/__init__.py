"""Measurement scripts behind docs/; each runs from the repository root: python -m experiments.<name>."""
