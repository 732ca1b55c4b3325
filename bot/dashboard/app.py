"""The dashboard's web application (FastAPI, server-rendered Jinja2 pages, no build step).

Pages: the overview (``/``), one page per contract (``/contracts/BTC-USDT-USDT``), the journal
(``/journal``, filterable by contract and time), the comparison of simulation runs
(``/compare``); actions (``/actions/halt``, ``/actions/flatten``, ``/actions/resume``: a GET asks
for confirmation, the POST acts); ``/metrics`` (Prometheus) and ``/healthz``.
"""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from loguru import logger
from markupsafe import Markup
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from bot import numbers
from bot.clock import Clock
from bot.dashboard import charts
from bot.dashboard.metrics import (
    age_seconds,
    build_registry,
    health,
    jobs_failing,
    not_running,
)
from bot.dashboard.model import Overview, Source
from bot.dashboard.security import CSRF_COOKIE, AllowedHosts, Guard, Refused, new_csrf
from bot.errors import BotError
from bot.logs import REDACTED
from bot.runtime.commands import post_command
from bot.store.sql import SqlStore
from bot.store.views import TimeWindow

HERE = Path(__file__).parent
ACTIONS = {
    "halt": ("halt", False, "Halt trading", "No new orders; positions and their stops stay."),
    "flatten": (
        "halt",
        True,
        "Halt and flatten",
        "No new orders, and every position is closed with reduce-only market orders.",
    ),
    "resume": ("resume", False, "Resume trading", "Back to active: the policy trades again."),
}
REFRESH_SECONDS = 15
# No framing (a halt button must not be clickjacked), scripts from this server only, no
# inline script, forms post back here only.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
JOURNAL_LIMIT = 100


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172_800:
        return f"{s // 3600} h"
    return f"{s // 86_400} d"


def _live_age(seconds: float | None) -> Markup | str:
    """An age that the open tab counts on between refreshes (static/live.js), and while the
    dashboard does not answer: a server-rendered "8 s" stood still and looked fresh."""
    if seconds is None:
        return "-"
    return Markup('<span class="age" data-age-s="{:.3f}">{}</span>').format(seconds, _age(seconds))


def _parse_time(value: str | None, name: str) -> int | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(
            400, f"{name}={value!r}: expected a time like 2025-06-01T12:00"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


class ActionForms:
    """One command per confirmation page: each page carries a one-time form id, and a POST of
    an id already posted is not posted again (a double click, a browser resubmitting the form
    on reload, which could halt again after a resume). Ids live in this process: a confirmation
    page from before a restart of the dashboard is refused (open the action again)."""

    KEEP = 200  # ids remembered, issued and posted each (the oldest are forgotten)

    def __init__(self) -> None:
        self._lock = threading.Lock()  # pages are served from a thread pool
        self._issued: dict[str, str] = {}  # form id -> action
        self._posted: dict[str, int | None] = {}  # form id -> command id (None: being posted)

    def issue(self, action: str) -> str:
        form_id = secrets.token_urlsafe(16)
        with self._lock:
            self._issued[form_id] = action
            _forget_oldest(self._issued, self.KEEP)
        return form_id

    def claim(self, action: str, form_id: str) -> tuple[bool, int | None]:
        """(True, None) when ``form_id`` may be posted now (it is claimed: a second request with
        it gets (False, the command's id, or None while the first is being posted)); raises
        :class:`Refused` for an id this dashboard did not issue for ``action``."""
        with self._lock:
            if form_id in self._posted:
                return False, self._posted[form_id]
            if not form_id or self._issued.get(form_id) != action:
                raise Refused(
                    "this confirmation page is not one this dashboard issued for "
                    f"{action} (expired by a restart?): open the action again"
                )
            del self._issued[form_id]
            self._posted[form_id] = None
            _forget_oldest(self._posted, self.KEEP)
            return True, None

    def posted(self, form_id: str, command_id: int) -> None:
        with self._lock:
            self._posted[form_id] = command_id

    def failed(self, action: str, form_id: str) -> None:
        """Posting failed (the database did not answer): the page may be sent again."""
        with self._lock:
            self._posted.pop(form_id, None)
            self._issued[form_id] = action


def _forget_oldest(entries: dict[str, Any], keep: int) -> None:
    while len(entries) > keep:
        del entries[next(iter(entries))]


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters["price"] = lambda v, tick=None: numbers.price(v, tick, grouping=True)
    env.filters["qty"] = lambda v, step=None: numbers.qty(v, step)
    env.filters["held_qty"] = lambda v, step=None: numbers.held_qty(v, step)
    env.filters["money"] = lambda v: numbers.money(v, grouping=True)
    env.filters["pct"] = lambda v, places=2: numbers.percent(v, places)
    env.filters["fixed"] = lambda v, places=2: numbers.fixed(v, places)
    env.filters["iso"] = _iso
    env.filters["age"] = _age
    env.filters["live_age"] = _live_age
    return templates


def refuse_foreign_hosts(app: FastAPI, hosts: AllowedHosts) -> None:
    """Answer a request for any other host than ``hosts`` with 400, before any route (pages,
    actions, ``/metrics``, ``/healthz``, static files) runs: the DNS-rebinding defence
    (bot.dashboard.security)."""
    logged: set[str | None] = set()  # each name once: a rebinding page may poll all day

    @app.middleware("http")
    async def trusted_host(request: Request, call_next: Any) -> Response:
        host = request.headers.get("host")
        if hosts.admits(host):
            response: Response = await call_next(request)
            return response
        if host not in logged and len(logged) < 100:
            logged.add(host)
            logger.warning(
                "web server: a request for host {!r} refused: it answers for {} (a reverse "
                "proxy's name needs --allowed-host NAME)",
                host,
                hosts.shown(),
            )
        # (the names it answers for are not listed here: the asking page may be the attacker's)
        return PlainTextResponse(
            f"this server does not answer for host {host!r}. Behind a reverse proxy, start it "
            "with --allowed-host NAME (the name the browser shows)",
            status_code=400,
        )


def create_app(  # noqa: C901 - the routes are closures over the sources
    sources: dict[str, Source],
    *,
    store: SqlStore | None,
    guard: Guard,
    clock: Clock,
    registry: CollectorRegistry | None = None,
    refresh_seconds: int = REFRESH_SECONDS,
    hosts: AllowedHosts | None = None,
) -> FastAPI:
    """The dashboard of ``sources`` (one account, or simulation runs by name).

    ``store`` is the account's database (None for simulations: no actions). ``registry`` adds the
    running bot's own metrics to ``/metrics`` (``bot run --dashboard``). Account pages reload
    their content every ``refresh_seconds`` (0: never). ``hosts``: the host names it answers
    for (default: the loopback names only)."""
    if not sources:
        raise ValueError("the dashboard needs at least one account or simulation run")
    if refresh_seconds < 0:
        raise ValueError(f"refresh every {refresh_seconds} s: must be >= 0")
    default = next(iter(sources))
    templates = _templates()
    allowed = hosts or AllowedHosts.serving()
    app = FastAPI(title="perp-risk-bot", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    refuse_foreign_hosts(app, allowed)  # (inside security_headers: its 400 gets them too)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(BotError)
    async def unreadable(request: Request, exc: BotError) -> Response:
        # What the page reads cannot be read (a simulation's files half written or damaged, the
        # state database unavailable): say so, 503, rather than a bare 500.
        logger.warning("dashboard: {} cannot be served: {}", request.url.path, exc)
        if request.url.path in ("/healthz", "/metrics"):
            return JSONResponse({"ok": False, "detail": str(exc)}, status_code=503)
        return render(
            request,
            "message.html",
            {"title": "cannot be read", "message": str(exc), "ok": False, "refresh": 0},
            status=503,
        )

    forms = ActionForms()
    account_registry, _ = build_registry(sources[default], store, clock)
    registries = [account_registry] + ([registry] if registry is not None else [])
    can_act = store is not None and sources[default].kind == "account"

    def pick(run: str | None) -> tuple[str, Source]:
        name = run or default
        if name not in sources:
            raise HTTPException(404, f"no run named {name!r}; runs: {', '.join(sources)}")
        return name, sources[name]

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE) or new_csrf()
        run = context.get("run", default)
        context = {
            "runs": list(sources),
            "run": run,
            "run_query": "" if run == default else f"?run={quote(run)}",
            "read_only": guard.read_only or not can_act,
            "can_act": can_act,
            "csrf": csrf,
            "refresh": refresh_seconds if sources[default].kind == "account" else 0,
            # when the page was rendered, on the server's clock: an open tab whose refreshes
            # fail says "figures as of" it, and counts the ages on from it (static/live.js)
            "rendered_ms": clock.now_ms(),
            **context,
        }
        response = templates.TemplateResponse(request, name, context, status_code=status)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict")
        return response

    def stale(ov: Overview, now_ms: int) -> bool:
        """The last tick is older than two intervals (or none was recorded)."""
        if ov.kind != "account" or ov.replayed:
            return False  # (replayed time is not judged on the wall clock)
        return ov.last_tick_ms is None or now_ms - ov.last_tick_ms > 2 * ov.interval_ms

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request, run: str | None = None) -> Response:
        name, src = pick(run)
        now = clock.now_ms()
        ov = src.overview(now)
        curve = src.curve()
        eq = charts.reduce(curve.ts_ms, curve.equity, keep_max=False)
        dd = charts.reduce(curve.ts_ms, [d * 100 for d in curve.drawdown], keep_max=True)
        return render(
            request,
            "overview.html",
            {
                "run": name,
                "ov": ov,
                "now_ms": now,
                "age_s": (now - ov.last_tick_ms) / 1000
                if ov.last_tick_ms and not ov.replayed
                else None,
                "as_of_age_s": age_seconds(ov, now, ov.as_of_ms) if ov.as_of_ms else None,
                "stale": stale(ov, now),
                "not_running": not_running(ov, now),
                "jobs_failing": jobs_failing(ov, now),
                "missed_alerts": ov.missed_alerts,
                "job_age_s": age_seconds(ov, now, ov.last_job_ms) if ov.last_job_ms else None,
                "equity_chart": Markup(  # noqa: S704 - built by charts.py, every text escaped
                    charts.line_chart(
                        [charts.Series("equity", eq.ts_ms, eq.values)], title="equity"
                    )
                ),
                "drawdown_chart": Markup(  # noqa: S704 - built by charts.py, every text escaped
                    charts.line_chart(
                        [charts.Series("drawdown %", dd.ts_ms, dd.values)],
                        title="drawdown %",
                        value_format="{:.1f} %",
                        invert=True,
                    )
                ),
            },
        )

    @app.get("/contracts/{contract}", response_class=HTMLResponse)
    def contract(request: Request, contract: str, run: str | None = None) -> Response:
        name, src = pick(run)
        now = clock.now_ms()
        ov = src.overview(now)
        view = ov.contract(contract)
        if view is None:
            raise HTTPException(404, f"no contract {contract!r} in {ov.title}")
        window = TimeWindow(symbol=view.symbol)
        tables = src.journal(window, 20)
        return render(
            request,
            "contract.html",
            {"run": name, "ov": ov, "c": view, "tables": tables, "now_ms": now},
        )

    @app.get("/journal", response_class=HTMLResponse)
    def journal(
        request: Request,
        run: str | None = None,
        symbol: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = JOURNAL_LIMIT,
    ) -> Response:
        name, src = pick(run)
        if symbol and symbol not in src.symbols():
            raise HTTPException(404, f"no contract {symbol!r}; contracts: {src.symbols()}")
        if not 1 <= limit <= 5000:
            raise HTTPException(400, f"limit={limit}: between 1 and 5000")
        window = TimeWindow(
            symbol or None, _parse_time(since, "since"), _parse_time(until, "until")
        )
        return render(
            request,
            "journal.html",
            {
                "run": name,
                "title": src.name,
                "symbols": src.symbols(),
                "symbol": symbol or "",
                "since": since or "",
                "until": until or "",
                "limit": limit,
                "tables": src.journal(window, limit),
            },
        )

    @app.get("/compare", response_class=HTMLResponse)
    def compare(request: Request) -> Response:
        curves = {n: s.curve() for n, s in sources.items()}
        eq, dd = [], []
        for n, c in curves.items():
            e = charts.reduce(c.ts_ms, c.equity, keep_max=False)
            d = charts.reduce(c.ts_ms, [x * 100 for x in c.drawdown], keep_max=True)
            eq.append(charts.Series(n, e.ts_ms, e.values))
            dd.append(charts.Series(n, d.ts_ms, d.values))
        rows = [(n, s.overview(clock.now_ms())) for n, s in sources.items()]
        return render(
            request,
            "compare.html",
            {
                "rows": rows,
                "equity_chart": Markup(  # noqa: S704 - built by charts.py, every text escaped
                    charts.line_chart(eq, title="equity")
                ),
                "drawdown_chart": Markup(  # noqa: S704 - built by charts.py, every text escaped
                    charts.line_chart(dd, title="drawdown %", value_format="{:.1f} %", invert=True)
                ),
            },
        )

    @app.get("/actions/{action}", response_class=HTMLResponse)
    def confirm(request: Request, action: str) -> Response:
        if action not in ACTIONS:
            raise HTTPException(404, f"no action {action!r}: halt, flatten or resume")
        _, _, label, effect = ACTIONS[action]
        return render(
            request,
            "confirm.html",
            {
                "action": action,
                "label": label,
                "effect": effect,
                "ov": _ov(),
                "refresh": 0,
                "form_id": forms.issue(action),
            },
        )

    def _ov() -> Overview:
        return sources[default].overview(clock.now_ms())

    @app.post("/actions/{action}", response_class=HTMLResponse)
    def act(
        request: Request,
        action: str,
        token: Annotated[str, Form()] = "",
        csrf: Annotated[str, Form()] = "",
        confirm: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
        form_id: Annotated[str, Form()] = "",
    ) -> Response:
        if action not in ACTIONS:
            raise HTTPException(404, f"no action {action!r}: halt, flatten or resume")
        kind, flatten, label, _ = ACTIONS[action]
        try:
            if not can_act or store is None:
                raise Refused("actions need a paper or live account (not a simulation)")
            guard.check(
                hosts=allowed,
                host=request.headers.get("host"),
                origin=request.headers.get("origin"),
                referer=request.headers.get("referer"),
                csrf_cookie=request.cookies.get(CSRF_COOKIE),
                csrf_form=csrf,
                token_form=token,
            )
            if confirm != "yes":
                raise Refused("not confirmed")
            fresh, posted = forms.claim(action, form_id)
        except Refused as exc:
            client = request.client.host if request.client else "?"
            logger.warning("dashboard: {} refused from {}: {}", action, client, exc)
            return render(
                request,
                "message.html",
                {"title": f"{label}: refused", "message": str(exc), "ok": False, "refresh": 0},
                status=403,
            )
        if not fresh:
            # The same confirmation sent again (a double click, the browser resubmitting the
            # form on reload): it was posted once; a second halt or resume is not queued.
            return render(
                request,
                "message.html",
                {
                    "title": f"{label}: already posted",
                    "message": "this confirmation was posted already"
                    + (f", as command {posted}" if posted is not None else "")
                    + "; it is not posted again (open the action again for a new one)",
                    "ok": False,
                    "refresh": 0,
                },
                status=409,
            )
        # The reason is recorded, logged and alerted by the bot: the operator token typed into
        # it by mistake (the field beside it) must not travel with it (masked before the cut,
        # so no part of it is left).
        typed = reason.replace(guard.token, REDACTED) if guard.token else reason
        text = typed.strip()[:200] or f"dashboard {action}"
        try:
            cmd = post_command(
                store,
                "halt" if kind == "halt" else "resume",
                reason=text,
                flatten=flatten,
                now_ms=clock.now_ms(),
            )
        except BaseException:
            forms.failed(action, form_id)
            raise
        forms.posted(form_id, cmd)
        logger.warning("dashboard: {} posted as command {} ({})", action, cmd, text)
        return render(
            request,
            "message.html",
            {
                "title": f"{label}: posted",
                "message": f"command {cmd} posted; the running bot applies it at its next job "
                "(within its guard interval), or at its next start.",
                "ok": True,
                "refresh": 0,  # a refresh would GET the action's URL: its confirmation page
            },
        )

    @app.get("/metrics")
    def metrics() -> Response:
        body = b"".join(generate_latest(r) for r in registries)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> Response:
        now = clock.now_ms()
        ov = _ov()
        ok, detail = health(ov, now)
        return JSONResponse(
            {
                "ok": ok,
                "detail": detail,
                "state": ov.state,
                "last_tick_ms": ov.last_tick_ms,
                "last_job_ms": ov.last_job_ms,
                "last_job": ov.last_job,
            },
            status_code=200 if ok else 503,
        )

    return app
