"""Pure domain model: enums, instruments, orders, positions, decisions, margin mathematics.

Nothing here imports from outside ``bot.domain`` or does I/O. Money, prices, quantities and
leverage are ``Decimal``; times are timezone-aware UTC ``datetime`` or integer epoch milliseconds.
"""
