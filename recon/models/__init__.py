"""Implicit networks and chart networks."""
