"""The fingerprint of the code this process runs: every point of a sweep must run the same code.

A Dask worker runs whatever checkout its host has. An older one unpickled a newer task into
its own class and ran it without complaint (a walk-forward's policy switches silently dropped,
an out-of-sample run printed as if valid); any other difference in the simulation would move
its rows just as silently. The sweep sends its own fingerprint with every task and the worker
compares it with its own before running a point.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import bot

OTHER_CODE = "worker runs other code than the sweep"
"""How the error of a point refused for other code starts: the sweep stops on it."""


@functools.cache
def code_fingerprint() -> str:
    """A hash of the ``bot`` package's sources and bundled resources (the contract
    specifications), computed once per process: a few milliseconds."""
    root = Path(bot.__file__).resolve().parent
    files = sorted(
        p
        for p in [*root.rglob("*.py"), *(root / "resources").rglob("*")]
        if p.is_file() and "__pycache__" not in p.parts
    )
    digest = hashlib.blake2b(digest_size=8)
    for path in files:
        data = path.read_bytes()
        digest.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def other_code(fingerprint: str, sweep: str, scheduler: bool = False) -> str:
    """The message of a worker (or the scheduler, which unpickles every point too) that runs
    other code than the sweep."""
    who, where = ("scheduler", "the scheduler and every worker") if scheduler else ("", "")
    said = OTHER_CODE.replace("worker", who) if who else OTHER_CODE
    return (
        f"{said} (fingerprint {fingerprint} vs {sweep} in the sweep): install the same project "
        f"version on {where or 'every worker'}"
    )
