"""Configuration and policy files: TOML → frozen, validated models.

Use :func:`load_config` and :func:`load_policy`; both raise :class:`bot.errors.ConfigError` with
one line per problem (``<file>: <key.path>: <what is wrong> (got <value>)``).
"""

from bot.config.loader import load_config, load_policy
from bot.config.models import (
    AccountConfig,
    BotConfig,
    ContractConfig,
    DataConfig,
    ExchangeConfig,
    PolicyRef,
    RiskConfig,
    RuntimeConfig,
    SimulationConfig,
)
from bot.config.policy import (
    AllocationParams,
    DistanceParams,
    FundingParams,
    LeverageParams,
    LiquidationParams,
    OrderParams,
    Policy,
    PolicyLimits,
    VolatilityParams,
)

__all__ = [
    "AccountConfig",
    "AllocationParams",
    "BotConfig",
    "ContractConfig",
    "DataConfig",
    "DistanceParams",
    "ExchangeConfig",
    "FundingParams",
    "LeverageParams",
    "LiquidationParams",
    "OrderParams",
    "Policy",
    "PolicyLimits",
    "PolicyRef",
    "RiskConfig",
    "RuntimeConfig",
    "SimulationConfig",
    "VolatilityParams",
    "load_config",
    "load_policy",
]
