"""Printing: fleet, preflight, slicing, scheduling (pure; see the printing issue)."""
