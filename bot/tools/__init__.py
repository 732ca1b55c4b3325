"""Trader's tools on the engine's own mathematics: leverage calculator (:mod:`.calc`), volatility
tracker (:mod:`.voltrack`) and stress test (:mod:`.stress`, portfolios in :mod:`.portfolio`).

Margins, liquidation prices and brackets come from :mod:`bot.domain.margin`, volatility from
:mod:`bot.stats.volatility`, the policy's view from :mod:`bot.policy.decide`, and stress outcomes
from :class:`bot.sim.exchange.SimulatedExchange`, so a tool and the bot cannot disagree.
"""
