"""Policy research: parameter sweeps, walk-forward validation and overfitting statistics, run
through the one simulation entry point (:func:`bot.backtest.replay.run_simulation`) on local
processes or a Dask cluster."""
