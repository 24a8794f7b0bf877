"""Hostile input and security checks against the real service (long fuzz: scripts/fuzz.sh)."""
