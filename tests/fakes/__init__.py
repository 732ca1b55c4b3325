"""Hand-written test doubles; ``binance_loopback`` is a Binance USD-M REST server on 127.0.0.1."""
