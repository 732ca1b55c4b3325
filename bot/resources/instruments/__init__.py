"""Contract specifications, one JSON file per ccxt exchange id (read by bot/instruments.py)."""
