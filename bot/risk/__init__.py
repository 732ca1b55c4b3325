"""Risk: the trading state machine and the gate every order passes."""
