"""Unattended operation: price feeds for paper trading, the runner and the scheduler."""
