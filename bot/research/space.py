"""The searched space: ``--param KEY=V1,V2,...`` over dotted keys of a policy file.

Each point is the base policy's TOML table with the swept keys replaced, validated exactly like a
policy file; an invalid point carries its error instead of a policy (reported, not fatal).
Values are read as TOML values (``0.4`` is an exact Decimal, ``"ewma"`` or ``ewma`` a string,
``true`` a boolean). ``KEY=LO..HI`` is a continuous range (random and TPE search only).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import tomllib
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot import strict_json
from bot.config.loader import format_errors, load_policy
from bot.config.policy import Policy
from bot.errors import ConfigError

Scalar = Decimal | int | str | bool


@dataclass(frozen=True, slots=True)
class Param:
    key: str
    values: tuple[Scalar, ...] = ()
    low: Decimal | None = None
    high: Decimal | None = None
    integer: bool = False  # a range over an integer key (volatility.window): whole numbers

    @property
    def is_range(self) -> bool:
        return self.low is not None


def _value(text: str, where: str) -> Scalar:
    text = text.strip()
    if not text:
        raise ConfigError(f"{where}: empty value")
    try:
        parsed = tomllib.loads(f"v = {text}", parse_float=Decimal)["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word such as ewma is a string
    if isinstance(parsed, Decimal | int | str | bool):
        return parsed
    raise ConfigError(f"{where}: {text!r} is not a number, string or boolean")


def parse_param(spec: str) -> Param:
    """``leverage.max=2,3,4`` or ``leverage.target_volatility=0.2..0.6``."""
    where = f"--param {spec!r}"
    key, sep, rest = spec.partition("=")
    key = key.strip()
    if not sep or not key or not rest.strip():
        raise ConfigError(f"{where}: expected KEY=V1,V2,... or KEY=LO..HI")
    if any(not part.isidentifier() for part in key.split(".")):
        raise ConfigError(f"{where}: {key!r} is not a dotted key like leverage.max")
    if ".." in rest and "," not in rest:
        lo_text, _, hi_text = rest.partition("..")
        lo, hi = _value(lo_text, where), _value(hi_text, where)
        if not isinstance(lo, Decimal | int) or not isinstance(hi, Decimal | int):
            raise ConfigError(f"{where}: a range needs two numbers, got {rest!r}")
        if isinstance(lo, bool) or isinstance(hi, bool):
            raise ConfigError(f"{where}: a range needs two numbers, got {rest!r}")
        low, high = Decimal(lo), Decimal(hi)
        _check_range(key, low, high, where)
        return Param(key, low=low, high=high)
    values = tuple(_value(v, where) for v in rest.split(","))
    seen: dict[tuple[str, object], Scalar] = {}
    for v in values:
        same = seen.setdefault(_identity(v), v)
        if same is not v:
            # 0.4 and 0.40 (or 5 and "5") are one policy: run twice, they would be two
            # points in the table, a false tie and one trial counted twice
            raise ConfigError(
                f"{where}: a value is listed twice ({_shown(same)} and {_shown(v)} are the "
                "same value)"
            )
    return Param(key, values)


_NARROWEST = Decimal("1e-9")
"""The narrowest range, as a fraction of its bounds' size: the draws are floats (``random``'s,
Optuna's), whose 16 digits must still tell its points apart."""


def _check_range(key: str, low: Decimal, high: Decimal, where: str) -> None:
    """Bounds that every draw can be made from: finite numbers a float holds, low below high,
    and wide enough for a float to tell the points between them apart."""
    for bound in (low, high):
        if not bound.is_finite():
            raise ConfigError(f"{where}: {key}'s bounds must be finite numbers, got {bound}")
    if low >= high:
        raise ConfigError(
            f"{where}: the range must go from low to high, got {format(low, 'f')}.."
            f"{format(high, 'f')}"
        )
    if not math.isfinite(float(high) - float(low)):
        raise ConfigError(f"{where}: {key}'s range is too large to draw from (beyond a float's)")
    if high - low < max(abs(low), abs(high)) * _NARROWEST:
        raise ConfigError(
            f"{where}: {key}'s range is too narrow to draw from: its width must be at least "
            f"{_NARROWEST:.0e} times its larger bound (list the values instead: KEY=V1,V2)"
        )


def _identity(value: Scalar) -> tuple[str, object]:
    """What a value means to a policy: numbers (and numeric strings, which the policy reads
    as exact decimals too) by their value, so 0.4, 0.40 and "0.4" are one."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except ArithmeticError:
            return ("text", value)
        return ("number", number) if number.is_finite() else ("text", value)
    return ("number", Decimal(value))


def _shown(value: Scalar) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def check_keys(params: list[Param], shown: str) -> None:
    """Every swept key must name a value of a policy file (a typo is an error at once)."""
    keys = [p.key for p in params]
    dups = sorted({k for k in keys if keys.count(k) > 1})
    if dups:
        raise ConfigError(f"--param: {', '.join(dups)} swept twice")
    for p in params:
        parts = p.key.split(".")
        model: Any = Policy
        for i, part in enumerate(parts):
            known = getattr(model, "model_fields", {}) if model is not None else {}
            if part not in known:
                where = ".".join(parts[: i + 1])
                raise ConfigError(
                    f"{shown}: --param {p.key}: {where} is not a policy key"
                    + (f" (known here: {', '.join(sorted(known))})" if known else "")
                )
            leaf = known[part].annotation
            model = _model_of(leaf)
        if model is not None:
            raise ConfigError(f"{shown}: --param {p.key}: is a table, name one of its keys")
        lo, hi = p.low, p.high
        if lo is not None and hi is not None and _is_int(leaf):  # noqa: SIM102
            if lo != lo.to_integral_value() or hi != hi.to_integral_value():
                raise ConfigError(
                    f"{shown}: --param {p.key}: an integer key needs whole-number bounds, "
                    f"got {p.low}..{p.high}"
                )


def integer_ranges(params: list[Param]) -> list[Param]:
    """``params`` with each range over an integer key marked, so it draws whole numbers (a
    fractional draw would make every point of it invalid)."""
    out = []
    for p in params:
        leaf: Any = Policy
        for part in p.key.split("."):
            leaf = getattr(_model_of(leaf) or leaf, "model_fields", {})[part].annotation
        out.append(replace(p, integer=True) if p.is_range and _is_int(leaf) else p)
    return out


def _is_int(annotation: Any) -> bool:
    args = (annotation, *getattr(annotation, "__args__", ()))
    return any(a is int for a in args) and not any(a is bool for a in args)


def _model_of(annotation: Any) -> Any:
    for arg in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(arg, type) and hasattr(arg, "model_fields"):
            return arg
    return None


def apply(base: dict[str, Any], point: dict[str, Scalar]) -> dict[str, Any]:
    """A copy of the policy table ``base`` with each dotted key of ``point`` set."""
    raw = copy.deepcopy(base)
    for key, value in point.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[leaf] = value
    return raw


def validate(raw: dict[str, Any], shown: str) -> tuple[Policy | None, str | None]:
    """The policy, or None and the loader's error lines (one per problem) joined by ``; ``."""
    try:
        return Policy.model_validate(raw), None
    except ValidationError as exc:
        return None, "; ".join(format_errors(exc, shown, Policy))


def read_base(path: Path) -> dict[str, Any]:
    """The base policy's table, as its file says (validated first: a bad base is fatal)."""
    load_policy(path)
    raw = tomllib.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    raw.setdefault("name", path.stem)
    return raw


def grid(params: list[Param]) -> list[dict[str, Scalar]]:
    ranged = [p.key for p in params if p.is_range]
    if ranged:
        raise ConfigError(f"--search grid needs listed values; {', '.join(ranged)} is a range")
    return [
        dict(zip([p.key for p in params], combo, strict=True))
        for combo in itertools.product(*(p.values for p in params))
    ]


def random_points(params: list[Param], trials: int, seed: int) -> list[dict[str, Scalar]]:
    """``trials`` distinct points drawn with a seeded generator (all of a smaller grid, or of
    a smaller space of whole numbers)."""
    rng = random.Random(seed)
    if not any(p.is_range for p in params):
        full = grid(params)
        return full if trials >= len(full) else rng.sample(full, trials)
    # Distinct points: a range over few whole numbers draws the same point again and again;
    # each copy would be simulated anew and shown as another point tying with itself.
    out: list[dict[str, Scalar]] = []
    seen: set[tuple[tuple[str, object], ...]] = set()
    for _ in range(_DRAWS_PER_TRIAL * trials):
        if len(out) == trials:
            break
        point = {p.key: _draw(p, rng) for p in params}
        identity = tuple(_identity(v) for v in point.values())
        if identity not in seen:
            seen.add(identity)
            out.append(point)
    return out


_DRAWS_PER_TRIAL = 50
"""Draws allowed per asked trial before random search settles for the distinct points it has
(a small space, e.g. ``volatility.window=100..102`` with 10 trials, holds fewer)."""


def _draw(p: Param, rng: random.Random) -> Scalar:
    if p.low is None or p.high is None:
        return rng.choice(p.values)
    if p.integer:
        return rng.randint(int(p.low), int(p.high))
    return on_step(p, Decimal(str(rng.uniform(float(p.low), float(p.high)))))


_STEP = Decimal("0.0001")
"""The step a drawn value is rounded to in a range at least :data:`_STEPS` of it wide."""
_STEPS = 100


def _bounds(p: Param) -> tuple[Decimal, Decimal]:
    if p.low is None or p.high is None:
        raise ValueError(f"{p.key}: listed values, not a range")
    return p.low, p.high


def step(p: Param) -> Decimal:
    """The step a range's drawn values are rounded to: 0.0001, or in a range narrower than 100
    of them a power of ten that gives it 100 to 999 (a range of 0.00011..0.00019 rounded to
    0.0001 ran 0.0001 and 0.0002, neither in it)."""
    low, high = _bounds(p)
    width = high - low
    if width >= _STEP * _STEPS:
        return _STEP
    return Decimal(1).scaleb(width.adjusted() - 2)


def on_step(p: Param, drawn: Decimal) -> Decimal:
    """A value drawn in range ``p`` as it runs and is reported: rounded to the range's
    :func:`step`, toward the inside past either bound (a bound between two steps, or a float's
    last digit beyond it), so it always lies within the range."""
    low, high = _bounds(p)
    places = step(p)
    # as many digits as the value needs at that step: 28 cannot hold 1e30 to 4 decimals
    context = Context(prec=max(28, drawn.adjusted() - places.adjusted() + 2))
    value = drawn.quantize(places, context=context)
    if value < low:
        value = drawn.quantize(places, rounding=ROUND_CEILING, context=context)
    elif value > high:
        value = drawn.quantize(places, rounding=ROUND_FLOOR, context=context)
    # never past a bound, whatever a float's last digit did (a range holds 100 steps or more)
    return min(max(value, low), high)


def to_toml(raw: dict[str, Any]) -> str:
    """A policy table as TOML: scalars and arrays first, then one [table] per section (nested
    ones as [a.b]), so every policy file the loader reads can be written back (a hedged policy
    has an array, ``hedge.instruments``)."""
    lines: list[str] = []
    _write_table(raw, (), lines)
    return "\n".join(lines) + "\n"


def _write_table(table: dict[str, Any], path: tuple[str, ...], lines: list[str]) -> None:
    if path:
        lines += ["", "[" + ".".join(path) + "]"]
    for key, value in table.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            _write_table(value, (*path, key), lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return format(value, "f") if isinstance(value, Decimal) else str(value)
    if isinstance(value, str):
        return strict_json.dumps(value)  # a JSON string is a TOML basic string (escapes included)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} to a policy file")


def point_label(point: dict[str, Scalar]) -> str:
    return " ".join(f"{k}={text(v)}" for k, v in point.items())


def text(value: Scalar) -> str:
    """A swept value as the trader writes it in ``--param`` and the policy file (``true``, not
    Python's ``True``): the results' cells, the table, the labels."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cell_text(cell: object) -> str:
    """A results cell read back as :func:`text` writes it (``True``/``False`` in files written
    before booleans were shown as TOML writes them)."""
    shown = str(cell)
    return shown.lower() if shown in ("True", "False") else shown
