"""The dry-run simulation: history replayed through the engine and the simulated exchange, and its
report (metrics, tables, plots)."""
