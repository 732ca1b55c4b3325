"""Exchange port and its implementations (simulated, ccxt)."""
