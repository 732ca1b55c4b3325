"""The operator's web dashboard and Prometheus metrics (``bot serve``, ``bot run --dashboard``,
``bot run --metrics-port``). Needs the optional ``dashboard`` extra."""

from __future__ import annotations

from bot.errors import ConfigError

INSTALL_HINT = "pip install 'perp-risk-bot[dashboard]'"


def require_extra() -> None:
    """Raise a clear error when the web packages of the ``dashboard`` extra are missing."""
    missing = []
    for module in ("fastapi", "jinja2", "uvicorn", "prometheus_client"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ConfigError(
            f"the dashboard needs {', '.join(missing)}, which are not installed: {INSTALL_HINT}"
        )
