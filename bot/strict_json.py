"""Every JSON text the project writes: strict JSON, whatever the numbers in it.

Python's ``json`` writes an infinite or NaN float as ``Infinity`` / ``NaN``, which is not JSON:
any strict parser (JavaScript's ``JSON.parse``, ``jq``, Go, Rust's serde, orjson) rejects the
whole file. A run of an hour or two with a large gain has an infinite CAGR and Calmar ratio
(the annualised figure overflows a float), so report.json, the sweep's summary and anything
carrying them could not be read by another tool.

The convention, everywhere (report.json, account.json, the sweep's sweep.json and summary.json,
``bot status --json``, the tools' ``--json`` output, the paper state, the catalogue files): a
number that is not finite is written ``null``, and the object that holds it gets a
``"not_finite"`` object saying, per key, what it was and why (``"cagr": "Infinity: ..."``; an
item of a list is named ``key[i]``). A writer that knows why (report.json: a span too short to
annualise) puts its own reason under ``not_finite``; otherwise the entry says what the value
was. Written with ``allow_nan=False``: a value this walk does not reach fails loudly, with
where it is, instead of writing a file no strict parser reads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

NOT_FINITE = "not_finite"


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(obj, **kwargs)`` with every non-finite float written ``null`` and said in
    its object's ``not_finite`` (see the module's docstring); never ``Infinity`` or ``NaN``."""
    clean = finite(obj)
    try:
        return json.dumps(clean, allow_nan=False, **kwargs)
    except ValueError as exc:  # (a value the walk cannot see, e.g. one made by ``default``)
        raise ValueError(f"not strict JSON: {exc} in {_describe(obj)}") from exc


def finite(obj: Any) -> Any:
    """A copy of ``obj`` (dicts, lists and tuples walked; anything else kept) in which every
    float that is not finite is ``None`` and noted in the ``not_finite`` entry of the object
    that holds it; a reason already there (the writer's) is kept."""
    if isinstance(obj, Mapping):
        return _mapping(obj)
    if isinstance(obj, list | tuple):
        return _sequence(obj, "", {})  # (a bare list: no object to say it in)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # (a bare number: no object to say it in)
    return obj


def _mapping(obj: Mapping[Any, Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    notes: dict[str, str] = {}
    for key, value in obj.items():
        if key == NOT_FINITE:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = None
            notes[str(key)] = _what(value)
        elif isinstance(value, list | tuple):
            out[key] = _sequence(value, str(key), notes)
        else:
            out[key] = finite(value)
    given = obj.get(NOT_FINITE)
    if isinstance(given, Mapping):
        notes.update({str(k): str(v) for k, v in given.items()})  # the writer's reasons
    if notes:
        out[NOT_FINITE] = dict(sorted(notes.items()))
    return out


def _sequence(items: list[Any] | tuple[Any, ...], name: str, notes: dict[str, str]) -> list[Any]:
    """``items`` walked; a non-finite item is ``None``, noted as ``name[i]`` in ``notes``."""
    out: list[Any] = []
    for i, value in enumerate(items):
        if isinstance(value, float) and not math.isfinite(value):
            out.append(None)
            notes[f"{name}[{i}]"] = _what(value)
        elif isinstance(value, list | tuple):
            out.append(_sequence(value, f"{name}[{i}]", notes))
        else:
            out.append(finite(value))
    return out


def name_of(value: float) -> str:
    """A non-finite float as Python's json module would have written it."""
    return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"


def _what(value: float) -> str:
    return f"{name_of(value)} (no JSON number)"


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        return f"an object with keys {', '.join(map(str, list(obj)[:8]))}"
    return type(obj).__name__
