"""No module that the simulated exchange imports refers back to it, not even for a type.

Annotation-only imports (``if TYPE_CHECKING:``) count: the import graph is built with them, as
``lint-imports`` builds it (``exclude_type_checking_imports = false`` in pyproject.toml).
"""

from __future__ import annotations

import grimp

EXCHANGE = "bot.sim.exchange"


def test_nothing_the_simulated_exchange_imports_imports_it_back() -> None:
    graph = grimp.build_graph("bot", exclude_type_checking_imports=False)
    upstream = graph.find_upstream_modules(EXCHANGE)
    assert {"bot.sim.triggers", "bot.sim.account_watch"} <= upstream
    back = sorted(m for m in upstream if graph.chain_exists(importer=m, imported=EXCHANGE))
    assert back == [], f"import cycle through {EXCHANGE}: {back}"


def test_the_triggers_name_the_protocol_not_the_exchange() -> None:
    graph = grimp.build_graph("bot", exclude_type_checking_imports=False)
    for module in ("bot.sim.triggers", "bot.sim.account_watch"):
        assert not graph.direct_import_exists(importer=module, imported=EXCHANGE)
