"""Log sinks never show a secret: no variable values in tracebacks, redacted exception chains."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import ccxt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from loguru import logger

from bot.logs import REDACTED, Redactor, redact, setup_logging, url_credentials

SECRET = "unit-secret-9c41e2"
HEADER_KEY = "header-key-51d0"
SIGNED = "GET http://127.0.0.1:1/fapi/v3/account?timestamp=1&signature=" + "ab" * 32


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    setup_logging(tmp_path / "logs", level="DEBUG", secrets=[SECRET])
    yield tmp_path / "logs"
    logger.remove()


def sign(secret: str, headers: dict[str, str]) -> None:
    payload = f"{secret}|{headers}"  # a frame whose locals hold the secret and the key header
    raise ValueError(f"signing failed for a payload of {len(payload)} characters")


def test_a_traceback_shows_no_variable_values(
    log_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    try:
        sign(SECRET, {"X-MBX-APIKEY": HEADER_KEY})
    except ValueError:
        logger.exception("request failed")
    logger.complete()
    out = capfd.readouterr().err + "".join(p.read_text() for p in log_dir.iterdir())
    assert "Traceback" in out
    assert "signing failed" in out
    assert SECRET not in out
    assert HEADER_KEY not in out


def test_every_link_of_an_exception_chain_is_redacted(
    log_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    try:
        try:
            raise ConnectionError(f"Max retries exceeded with url: {SIGNED}")
        except ConnectionError as inner:
            raise RuntimeError(f"binanceusdm {SIGNED} key {SECRET}") from inner
    except RuntimeError:
        logger.exception("tick failed")
    logger.complete()
    out = capfd.readouterr().err + "".join(p.read_text() for p in log_dir.iterdir())
    assert "Max retries exceeded" in out
    assert "signature=" + REDACTED in out
    assert "ab" * 32 not in out
    assert SECRET not in out


def test_redact_hides_known_values_and_signature_patterns() -> None:
    r = Redactor()
    r.add(["k3y-value", None, "abc"])  # values shorter than 4 characters are not secrets
    text = r.text(f"{SIGNED} 'X-MBX-APIKEY': 'other' k3y-value abc")
    assert "ab" * 32 not in text
    assert "other" not in text
    assert "k3y-value" not in text
    assert text.endswith(" abc")


def private_key_pem(kind: str) -> str:
    key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey = (
        ed25519.Ed25519PrivateKey.generate()
        if kind == "ed25519"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_a_base64_signature_is_redacted_whole(kind: str) -> None:
    """An Ed25519 or RSA API key signs in base64, URL-encoded in the query (ccxt's own signing
    here): a pattern for hex blanked its first characters and left the rest in every error
    text that quotes the request."""
    exchange = ccxt.binanceusdm(
        {"apiKey": "k" * 64, "secret": private_key_pem(kind), "options": {"fetchCurrencies": False}}
    )
    read = exchange.sign("positionRisk", ["fapiPrivateV3"], "GET", {})
    order = exchange.sign("order", ["fapiPrivate"], "POST", {"symbol": "BTCUSDT", "side": "BUY"})
    for text, signed in (
        (f"binanceusdm GET {read['url']} 503 Service Unavailable", read["url"]),  # ccxt's text
        (f"Request: POST {{'X': 1}} {order['body']!r}", order["body"]),  # ccxt's DEBUG line
    ):
        signature = signed.split("signature=")[1]
        assert not set(signature) <= set("0123456789abcdef")  # not hex: what the pattern missed
        assert Redactor().text(text) == text.replace(signature, REDACTED)


@pytest.mark.parametrize(
    ("url", "credentials"),
    [
        ("http://gw:pa%40ss@127.0.0.1:8080", ["gw:pa%40ss", "gw:pa@ss", "pa%40ss", "pa@ss"]),
        ("https://gw:p@ss@gateway/fapi", ["gw:p@ss", "p@ss"]),  # the host after the last "@"
        ("https://t0ken-only@gateway", ["t0ken-only"]),  # a user alone: it is the credential
        ("http://127.0.0.1:8080/a@b?c=d@e", []),  # an "@" past the authority
        ("http://127.0.0.1:8080", []),
        ("not a url", []),
    ],
)
def test_url_credentials_are_the_user_part_and_password(url: str, credentials: list[str]) -> None:
    assert url_credentials(url) == credentials


def test_the_process_redactor_knows_the_configured_secrets(log_dir: Path) -> None:
    assert SECRET not in redact(f"an error quoting {SECRET}")


def test_console_times_are_utc_whatever_the_local_zone(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time
    from datetime import UTC, datetime

    from bot.clock import LiveClock

    wall = LiveClock()

    monkeypatch.setenv("TZ", "America/New_York")  # a zone with daylight saving time
    time.tzset()
    try:
        setup_logging(None, level="INFO")
        before = wall.now().replace(microsecond=0)
        logger.info("which time is it")
        after = wall.now()
        logger.remove()
    finally:
        monkeypatch.undo()  # the zone as it was, for the tests that follow
        time.tzset()
    line = next(s for s in capfd.readouterr().err.splitlines() if "which time is it" in s)
    stamp = datetime.strptime(line.split(" | ")[0], "%Y-%m-%d %H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= stamp <= after


def test_the_console_sink_writes_to_the_stderr_of_now(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller that swaps ``sys.stderr`` for a while and closes its stream (click's CliRunner)
    must not leave the console sink on a closed file: later lines go to the stderr of then."""
    swapped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", swapped)
    logger.warning("while swapped")
    assert "while swapped" in swapped.getvalue()
    swapped.close()
    later = io.StringIO()
    monkeypatch.setattr(sys, "stderr", later)
    logger.warning("after the swapped stream closed")
    assert "after the swapped stream closed" in later.getvalue()
    assert "Logging error" not in later.getvalue()
