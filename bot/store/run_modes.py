"""The modes ``bot run`` records its runs under (``runs.mode``; ``views.latest_run``).

A module of its own, without the database libraries: the composition root names them at import
(a dry run does not load SQLAlchemy)."""

LIVE_RUN_MODE = "live"
PAPER_RUN_MODE = "paper"  # paper trading on live public prices
# ``bot run --replay``: paper trading on recorded data, on a replayed clock (the times it
# records are replayed times, not the wall clock's).
REPLAY_RUN_MODE = "paper-replay"
