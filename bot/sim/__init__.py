"""Simulation: replay, matching and reports."""
