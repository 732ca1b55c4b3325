"""Logging with loguru: a readable console, a JSON file with rotation and retention, the tick id
on every line of a tick, and secrets redacted in every sink.

ccxt and APScheduler log through the standard ``logging`` module; :class:`InterceptHandler`
routes them into loguru so the same redaction applies. ccxt logs each request at DEBUG with the
``X-MBX-APIKEY`` header and the signed URL: the redaction runs as a global patcher, before any
sink sees a record (``logger.patch`` would return a new logger that modules importing
``loguru.logger`` never see).
"""

from __future__ import annotations

import inspect
import logging
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

REDACTED = "***"
_PATTERNS = [
    # The whole signature, up to the next parameter, a space or a quote: an HMAC key signs in
    # hex, an Ed25519 or RSA key in base64, URL-encoded in the query (%2B %2F %3D); Binance
    # takes all three (github.com/binance/binance-spot-api-docs, faqs/api_key_types.md).
    re.compile(r"""(signature=)[^&\s'"]+"""),
    re.compile(r"""(['"]?X-MBX-APIKEY['"]?\s*[:=]\s*['"]?)[^'",}\s]+""", re.IGNORECASE),
    re.compile(r"""(['"]?X-BAPI-(?:API-KEY|SIGN)['"]?\s*[:=]\s*['"]?)[^'",}\s]+""", re.IGNORECASE),
    re.compile(r"""(['"]?OK-ACCESS-(?:KEY|SIGN|PASSPHRASE)['"]?\s*[:=]\s*['"]?)[^'",}\s]+"""),
    re.compile(r"(listenKey=)[A-Za-z0-9]+"),
    re.compile(r"""(['"]?listenKey['"]?\s*:\s*['"])[^'"]+"""),
]
_SECRET_FIELDS = ("api_key", "apikey", "secret", "api_secret", "password", "passphrase")


class Redactor:
    """Replaces known secret values and secret-looking patterns in log text."""

    def __init__(self) -> None:
        self._values: list[str] = []

    def add(self, values: Iterable[str | None]) -> None:
        for v in values:
            if v and len(v) >= 4 and v not in self._values:
                self._values.append(v)

    def text(self, s: str) -> str:
        for v in self._values:
            if v in s:
                s = s.replace(v, REDACTED)
        for p in _PATTERNS:
            s = p.sub(r"\1" + REDACTED, s)
        return s

    def __call__(self, record: Record) -> None:
        record["message"] = self.text(record["message"])
        extra: dict[str, Any] = record["extra"]
        for key, value in list(extra.items()):
            if key.lower() in _SECRET_FIELDS:
                extra[key] = REDACTED
            elif isinstance(value, str):
                extra[key] = self.text(value)
        if record["exception"] is not None and record["exception"].value is not None:
            self.exception(record["exception"].value)

    def exception(self, exc: BaseException) -> None:
        """Redact the text of ``exc`` and of every exception chained to it, in place.

        A traceback prints each link of the chain (``raise ... from``, implicit context): ccxt
        raises from the HTTP library's error, whose text can hold the signed URL.
        """
        seen: set[int] = set()
        pending: list[BaseException] = [exc]
        while pending:
            current = pending.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            current.args = tuple(self.text(a) if isinstance(a, str) else a for a in current.args)
            notes = getattr(current, "__notes__", None)
            if isinstance(notes, list):
                current.__notes__ = [self.text(n) if isinstance(n, str) else n for n in notes]
            pending.extend(a for a in current.args if isinstance(a, BaseException))
            for linked in (current.__cause__, current.__context__):
                if linked is not None:
                    pending.append(linked)


REDACTOR = Redactor()


def url_credentials(url: str) -> list[str]:
    """The credentials an ``http(s)://user:password@host`` URL carries, for the redactor: the
    user part whole (``user:password``) and the password, each as written and percent-decoded
    (what requests sends; [] without a user part). The authority ends at the first ``/ ? #``
    and the user part at its last ``@``, as urllib and requests split it (a password may hold
    an unencoded ``@``)."""
    _, sep, rest = url.partition("://")
    if not sep:
        return []
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo, at, _ = authority.rpartition("@")
    if not at or not userinfo:
        return []
    _, colon, password = userinfo.partition(":")
    out: list[str] = []
    for raw in (userinfo, password) if colon else (userinfo,):
        for value in (raw, unquote(raw)):
            if value and value not in out:
                out.append(value)
    return out


def redact(text: str) -> str:
    """``text`` with the process's known secrets and secret-looking patterns replaced.

    For text that leaves the process outside the log sinks: events and alerts in the database,
    alert payloads, exchange error messages.
    """
    return REDACTOR.text(text)


class InterceptHandler(logging.Handler):
    """Send standard-library log records (ccxt, APScheduler, urllib3) to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = inspect.currentframe(), 0
        while frame is not None and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


# UTC like every time the bot keeps (events, alerts, the trading day): a local time would
# repeat an hour at the end of daylight saving time and disagree with the records.
CONSOLE_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss!UTC}Z</green> | <level>{level: <7}</level> | "
    "{extra[tick]: <8} | {extra[replayed]}{message}"
)

# Libraries whose INFO lines (migrations run, jobs added, requests) are noise to an operator:
# shown only with ``bot --verbose``; their warnings and errors always show.
# Apprise logs every destination URL at DEBUG ("Loaded ntfy URL ...", "JSON POST URL ...").
THIRD_PARTY = (
    "alembic",
    "apprise",
    "apscheduler",
    "ccxt",
    "urllib3",
    "matplotlib",
    "httpx",
    "uvicorn",
)
VERBOSE = False  # set by ``bot --verbose``


class _CurrentStderr:
    """The console sink: whatever ``sys.stderr`` is when a line is written, not the stream it
    was when logging was set up. A caller that swaps the stream for a while (a test runner, an
    embedding program, click's CliRunner) and closes it afterwards would otherwise leave a sink
    on a closed file, and every later line would print a logging error into the next output."""

    def write(self, message: str) -> None:
        sys.stderr.write(message)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:  # loguru colours a terminal only
        return sys.stderr.isatty()


CURRENT_STDERR = _CurrentStderr()


def replayed_prefix(ms: int) -> str:
    """What a replayed job's log lines carry beside the wall time: the replayed time."""
    from datetime import UTC, datetime

    return "replay " + datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M") + " | "


def setup_logging(
    log_dir: Path | None,
    *,
    level: str = "INFO",
    secrets: Iterable[str | None] = (),
    console: bool = True,
    rotation: str = "20 MB",
    retention: int = 10,
) -> Path | None:
    """Configure every sink. Returns the JSON log file path (``None`` without a log dir)."""
    REDACTOR.add(secrets)
    logger.remove()
    logger.configure(patcher=REDACTOR, extra={"tick": "-", "replayed": ""})
    # No variable values in tracebacks (diagnose): a frame of ccxt's signed request holds the
    # request headers (the API key), the signed URL and, in ``sign``, the secret itself. The
    # chain of exceptions is kept; its texts are redacted by the patcher.
    if console:
        logger.add(
            CURRENT_STDERR,
            level=level,
            format=CONSOLE_FORMAT,
            colorize=None,
            backtrace=False,
            diagnose=False,
        )
    path = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / "bot.jsonl"
        logger.add(
            path,
            level="DEBUG",
            serialize=True,
            rotation=rotation,
            retention=retention,
            enqueue=True,
            backtrace=False,
            diagnose=False,
        )
    logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
    quiet = logging.DEBUG if VERBOSE else logging.WARNING
    for noisy in THIRD_PARTY:
        logging.getLogger(noisy).setLevel(quiet)
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    return path
