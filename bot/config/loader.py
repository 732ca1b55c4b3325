"""Read config and policy TOML files; turn every problem into one readable ConfigError.

Each line of a ConfigError reads ``<file>: <dotted.key.path>: <what is wrong> (got <value>)``.
Loading either returns a fully valid object or raises: nothing runs on a half-valid config.
"""

from __future__ import annotations

import re
import tomllib
import types
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from bot.config.database_url import database_url_secrets
from bot.config.models import BASE_DIR, POLICY_FILES, BotConfig, resolve_path
from bot.config.policy import RULES_ERROR, Issue, Loc, Policy, dotted
from bot.errors import ConfigError

SECRET_ENV_VARS = ("BOT_API_KEY", "BOT_API_SECRET", "BOT_API_PASSWORD")


def load_policy(path: Path) -> Policy:
    """Load and validate one policy file; ``name`` defaults to the file stem."""
    shown = _display(path)
    raw, problems = _read(path, shown)
    raw.setdefault("name", path.stem)
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        problems += format_errors(exc, shown, Policy)
    _raise_if(problems)
    return policy


def load_config(path: Path, *, policy_overrides: Sequence[Path] = ()) -> BotConfig:
    """Load and validate a config file and its policy (or ``policy_overrides`` instead).

    Relative paths in the file are taken from the file's directory; override paths from the
    working directory.
    """
    shown = _display(path)
    raw, problems = _read(path, shown)
    base_dir = path.resolve().parent
    for key in sorted(BotConfig.DERIVED_KEYS & raw.keys()):
        problems.append(_line(shown, (key,), _unknown_key(BotConfig, ())))
        del raw[key]
    policies, files, policy_problems = _load_policies(raw, base_dir, policy_overrides)
    data = {**raw, "source": path.resolve(), "policies": policies}
    try:
        config = BotConfig.model_validate(data, context={BASE_DIR: base_dir, POLICY_FILES: files})
    except ValidationError as exc:
        # With no policy loaded, the reason is already reported (policy.file or the policy's
        # own errors); "policies: too short" would only add noise.
        skip = frozenset() if policies else frozenset({"policies"})
        problems += format_errors(exc, shown, BotConfig, skip=skip)
    _raise_if(problems + policy_problems)
    return config


def format_errors(
    exc: ValidationError, shown: str, root: type[BaseModel], *, skip: frozenset[str] = frozenset()
) -> list[str]:
    """One ``<file>: <key.path>: <problem> (got <value>)`` line per pydantic error."""
    lines: list[str] = []
    errors = exc.errors(include_url=False)
    # Every array holding an entry with an error of its own, at any depth: contracts[0] for
    # contracts[0] and contracts[0].direction alike.
    failed_entries = {
        tuple(e["loc"])[:i]
        for e in errors
        for i, part in enumerate(e["loc"])
        if isinstance(part, int)
    }
    for error in errors:
        loc: Loc = tuple(error["loc"])
        if loc and loc[0] in skip:
            continue
        if error["type"] == "too_short" and loc in failed_entries:
            # pydantic counts an array's entries after validating them: one bad entry of a
            # one-entry array adds "must not be empty" to the entry's own error. Not shown.
            continue
        if error["type"] == RULES_ERROR:
            issues: tuple[Issue, ...] = error.get("ctx", {})["issues"]
            lines += [_line(shown, loc + i.loc, i.problem, i.got) for i in issues]
            continue
        problem, got = _describe(error, root)
        if got is not None and loc and loc[-1] in ("database_url", "api_url"):
            got = _masked(got, error.get("input"))
        lines.append(_line(shown, loc, problem, got))
    return lines


# --- reading ---------------------------------------------------------------------------------


def _read(path: Path, shown: str) -> tuple[dict[str, Any], list[str]]:
    """Parse the TOML (a syntax error raises at once) and drop secret keys, reporting each."""
    problems: list[str] = []
    return _strip_secrets(_parse_toml(path, shown), (), shown, problems), problems


def _parse_toml(path: Path, shown: str) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{shown}: file not found (got {path.resolve()})") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{shown}: not UTF-8 text (byte {exc.start})") from None
    try:
        # parse_float=Decimal keeps 0.1 exactly 0.1: no binary float ever holds a TOML number.
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_syntax_error(str(exc), text, shown)) from None


def _syntax_error(message: str, text: str, shown: str) -> str:
    # Python 3.11 puts the position only in the message: "... (at line 3, column 7)".
    match = re.fullmatch(r"(?s)(.*) \(at line (\d+), column (\d+)\)", message)
    if match:
        what, line, column = match.groups()
        return f"{shown}: line {line}, column {column}: invalid TOML: {what}"
    match = re.fullmatch(r"(?s)(.*) \(at end of document\)", message)
    if match:
        last = text.count("\n") + 1
        return f"{shown}: line {last}, at end of file: invalid TOML: {match.group(1)}"
    return f"{shown}: invalid TOML: {message}"


def _is_secret(key: str) -> bool:
    name = key.lower().replace("_", "").replace("-", "")
    return name in {"apikey", "privatekey", "passphrase"} or "secret" in name or "password" in name


def _strip_secrets(
    table: dict[str, Any], loc: Loc, shown: str, problems: list[str]
) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in table.items():
        if _is_secret(key):
            problem = "API keys are never read from files; set the environment variables " + (
                " / ".join(SECRET_ENV_VARS)
            )
            problems.append(_line(shown, (*loc, key), problem, "a value, not shown"))
        else:
            kept[key] = _strip_value(value, (*loc, key), shown, problems)
    return kept


def _strip_value(value: object, loc: Loc, shown: str, problems: list[str]) -> object:
    if isinstance(value, dict):
        return _strip_secrets(value, loc, shown, problems)
    if isinstance(value, list):
        return [_strip_value(item, (*loc, i), shown, problems) for i, item in enumerate(value)]
    return value


def _load_policies(
    raw: dict[str, Any], base_dir: Path, overrides: Sequence[Path]
) -> tuple[tuple[Policy, ...], dict[str, str], list[str]]:
    """The policies, each one's file as shown by policy name, and the problems found."""
    paths = list(overrides)
    if not paths:
        ref = raw.get("policy")
        file = ref.get("file") if isinstance(ref, dict) else None
        if not isinstance(file, str) or not resolve_path(file, base_dir).is_file():
            return (), {}, []  # the config's own validation reports policy.file
        paths = [resolve_path(file, base_dir)]
    loaded: list[Policy] = []
    files: dict[str, str] = {}
    problems: list[str] = []
    for path in paths:
        try:
            loaded.append(load_policy(path))
        except ConfigError as exc:
            problems.append(str(exc))
        else:
            files.setdefault(loaded[-1].name, _display(path))
    return (() if problems else tuple(loaded)), files, problems


# --- formatting ------------------------------------------------------------------------------

_PLAIN = {
    "missing": "required key missing",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "decimal_parsing": "must be a number like 0.25",
    "decimal_type": "must be a number",
    "finite_number": "must be a finite number",
    "date_type": "must be a date like 2025-06-02",
    "date_parsing": "must be a date like 2025-06-02",
    "date_from_datetime_parsing": "must be a date like 2025-06-02",
    "date_from_datetime_inexact": "must be a date like 2025-06-02 (no time of day)",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "tuple_type": "must be an array",
    "list_type": "must be an array",
    "path_type": "must be a path (a string)",
    "string_too_short": "must not be empty",
}
_TEMPLATES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "literal_error": "must be one of {expected}",
    "too_short": "must have at least {min_length} entries",
}
_NO_GOT = frozenset({"missing", "extra_forbidden"})


def _describe(error: ErrorDetails, root: type[BaseModel]) -> tuple[str, str | None]:
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind == "extra_forbidden":
        problem = _unknown_key(root, tuple(error["loc"])[:-1])
    elif kind in _PLAIN:
        problem = _PLAIN[kind]
    elif kind == "too_short" and ctx.get("min_length") == 1:
        problem = "must not be empty"
    elif kind in _TEMPLATES:
        # pydantic puts Python reprs in ctx ('a', Decimal('0.01')); show them as TOML would.
        text = _TEMPLATES[kind].format(**ctx)
        problem = re.sub(r"Decimal\('([^']*)'\)", r"\1", text).replace("'", '"')
    elif kind == "value_error":
        problem = str(ctx.get("error", error["msg"]))
    else:  # our own PydanticCustomError messages are already phrased for people
        problem = error["msg"][:1].lower() + error["msg"][1:]
    if kind in _NO_GOT:
        return problem, None
    return problem, str(ctx["got"]) if "got" in ctx else _show(error["input"])


def _unknown_key(root: type[BaseModel], parent: Loc) -> str:
    allowed = ", ".join(_allowed_keys(root, parent))
    return f"unknown key (allowed: {allowed})" if allowed else "unknown key"


def _allowed_keys(root: type[BaseModel], parent: Loc) -> list[str]:
    """Field names of the model found at ``parent`` inside ``root`` (declaration order)."""
    target: object = root
    for part in parent:
        target = _strip_none(target)
        if isinstance(part, int):
            args = get_args(target)
            target = args[0] if args else None
        elif isinstance(target, type) and issubclass(target, BaseModel):
            field = target.model_fields.get(part)
            target = field.annotation if field else None
        else:
            return []
    target = _strip_none(target)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        return []
    hidden: frozenset[str] = getattr(target, "DERIVED_KEYS", frozenset())
    return [name for name in target.model_fields if name not in hidden]


def _strip_none(annotation: object) -> object:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _show(value: object) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = f'"{value}"'
    elif isinstance(value, dict):
        text = "a table"
    elif isinstance(value, list | tuple):
        text = "an array"
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _masked(got: str, url: object) -> str:
    """``got`` with the passwords of a URL (the database's, a gateway's ``api_url``) as
    ``***``: an error must not print them to the terminal or a log (the log redactor learns
    them only once the config loaded)."""
    if isinstance(url, str):
        for secret in sorted(database_url_secrets(url), key=len, reverse=True):
            got = got.replace(secret, "***")
    return got


def _line(shown: str, loc: Loc, problem: str, got: str | None = None) -> str:
    where = f"{shown}: {dotted(loc)}: " if loc else f"{shown}: "
    return where + problem + (f" (got {got})" if got is not None else "")


def _display(path: Path) -> str:
    """The path as people will recognise it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise ConfigError("\n".join(problems))
