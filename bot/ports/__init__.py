"""The ports: what the engine needs from the outside world, and the records that cross them.

``exchange`` (orders, positions, balance), ``market`` (candles, funding, last price), ``store``
(durable state) and ``client_ids`` (the deterministic order identity both sides agree on). The
engine depends on these Protocols; the adapters (:mod:`bot.exchange`, :mod:`bot.sim`,
:mod:`bot.store`) implement them; only :mod:`bot.bootstrap` picks implementations.
"""
