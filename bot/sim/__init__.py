"""The simulated venue: the matching core (exchange, book, triggers) shared by the dry-run
simulation and paper trading, the durable paper account, and recorded history as market data."""
