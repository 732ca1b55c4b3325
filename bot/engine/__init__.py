"""The engine: one tick, the same in simulation, paper and live trading."""
