"""Generators of the chart's derived files: its README values table and the plain manifests."""
