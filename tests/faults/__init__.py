"""Fault injection against the real service under load (see tools.py and the table they print)."""
