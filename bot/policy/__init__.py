"""Leverage policies: pure functions of (market snapshot, account state, policy parameters)."""
