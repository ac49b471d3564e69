"""Spend without the gateway's database: a monthly ledger on disk, Prometheus metrics and budgets.

LiteLLM keeps spend in PostgreSQL through Prisma, which cannot be installed everywhere (see
``roles/litellm/README.md``). This module accounts for spend from what every success callback
sees instead, and is the spend guard's memory. The cost router's hook (``aiswarm.router.hook``)
calls :meth:`SpendGuard.record` for every successful call and :meth:`SpendGuard.blocked` before
routing; nothing here imports LiteLLM, so it runs and is tested anywhere.

What a call costs (:func:`entry_from_call`), by its model group in the catalog (``groups``):

- a group the catalog marks ``local`` or ``free`` with no price costs 0, whatever LiteLLM's
  price map says (Gemini's free-tier keys cost nothing, though the map prices the model);
- a paid group (tier ``premium`` or ``specialized``, or any price per token) costs LiteLLM's
  ``response_cost`` when it is above 0, else the catalog's ``input_cost_per_token`` x prompt
  tokens + ``output_cost_per_token`` x completion tokens;
- a cache hit costs 0; a group the catalog does not know costs LiteLLM's ``response_cost``
  (tier ``unknown``).

The ledger is one append-only JSON-lines file per UTC month, ``<ledger_dir>/spend-YYYY-MM.jsonl``,
one line per call ``{t, tier, group, deployment, key, route, prompt_tokens, completion_tokens,
usd}``. Every gateway worker appends under an exclusive ``flock`` and reads what the others
appended from where it last stopped, so all workers see the month's whole spend and a restart
loses nothing. A client key appears only as the first 12 hex digits of its sha256 (LiteLLM's
``user_api_key_hash`` is already that hash), never as its value.

Budgets (USD per calendar month, UTC) are per scope: ``swarm`` (everything) and the cloud tiers
``premium``, ``free``, ``specialized``. For each: the plan is budget x the elapsed share of the
month; spend above ``overrun_ratio`` (1.2: 20 % over plan, the design's alert threshold) x plan
sets ``aiswarm_spend_overrun{scope}`` to 1; spend at the budget sets ``aiswarm_spend_stopped``
to 1 and stops paid groups: every paid group for ``swarm``, the tier's paid groups for a tier.
The stop lifts by itself when a new month starts (a new file) or when a raised budget is
written (the role restarts the gateway). Settings come from a JSON file named by
``AISWARM_SPEND_CONFIG`` (the role writes ``/etc/aiswarm/litellm/spend.json``)::

    {"ledger_dir": "/var/lib/litellm/spend", "overrun_ratio": 1.2,
     "budgets_usd": {"swarm": 20.0, "premium": 15.0},
     "groups": {"hermes-3-405b": {"tier": "premium", "input_cost_per_token": 8e-07, ...}, ...}}

Metrics on the proxy's ``/metrics`` (prometheus_client in multiprocess mode):
``aiswarm_spend_usd_total{tier,model_group}``, ``aiswarm_spend_key_usd_total{key}`` (hash
prefix), and per scope ``aiswarm_spend_month_usd``, ``aiswarm_spend_budget_usd``,
``aiswarm_spend_plan_usd``, ``aiswarm_spend_overrun`` and ``aiswarm_spend_stopped`` (refreshed
on every request). The month's figures from the ledger, on any host that has it::

    python -m aiswarm.router.spend --config /etc/aiswarm/litellm/spend.json [--month 2026-07] [--json]
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiswarm.router.records import token_count, usage_tokens

try:
    from prometheus_client import Counter, Gauge

    _SPEND: Counter | None = Counter(
        "aiswarm_spend_usd", "Spend in USD accounted by the aiswarm spend guard", ["tier", "model_group"]
    )
    _KEY_SPEND: Counter | None = Counter(
        "aiswarm_spend_key_usd", "Spend in USD per client key (sha256 prefix)", ["key"]
    )
    _GAUGES: dict[str, Gauge] | None = {
        name: Gauge(f"aiswarm_spend_{name}", text, ["scope"], multiprocess_mode="livemostrecent")
        for name, text in (
            ("month_usd", "Spend of the current month in USD, from the ledger"),
            ("budget_usd", "Monthly budget in USD"),
            ("plan_usd", "Budget x elapsed share of the month"),
            ("overrun", "1 while spend is above overrun_ratio x plan"),
            ("stopped", "1 while the budget is spent and paid tiers are stopped"),
        )
    }
except ImportError:
    _SPEND = _KEY_SPEND = None
    _GAUGES = None

DEFAULT_PATH = "/etc/aiswarm/litellm/spend.json"
PAID_TIERS = frozenset({"premium", "specialized"})
SCOPES = ("swarm", "premium", "free", "specialized")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
log = logging.getLogger("aiswarm.spend")


class SpendError(ValueError):
    """Unusable settings or ledger; the message names the file, field or line."""


@dataclass(frozen=True)
class Group:
    """A model group as the catalog prices it."""

    tier: str
    input_cost_per_token: float = 0.0
    output_cost_per_token: float = 0.0
    # LiteLLM's model names of the group's deployments ("gemini/gemini-2.5-flash"): calls that
    # carry no group name, such as LiteLLM's background health checks, are found by them.
    models: tuple[str, ...] = ()

    @property
    def paid(self) -> bool:
        return self.tier in PAID_TIERS or self.input_cost_per_token > 0 or self.output_cost_per_token > 0

    def price(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input_cost_per_token + completion_tokens * self.output_cost_per_token


def _number(value: Any, where: str, *, positive: bool) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < 0
        or (positive and value == 0)
    ):
        raise SpendError(f"{where}: expected a number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SpendConfig:
    ledger_dir: Path
    groups: Mapping[str, Group] = field(default_factory=dict)
    budgets: Mapping[str, float] = field(default_factory=dict)
    overrun_ratio: float = 1.2

    @classmethod
    def from_mapping(cls, data: Any, source: str = "spend") -> SpendConfig:
        """Validate a settings mapping; a bad value names its key and what was expected."""
        if not isinstance(data, Mapping):
            raise SpendError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
        unknown = sorted(set(data) - {"ledger_dir", "groups", "budgets_usd", "overrun_ratio"})
        if unknown:
            raise SpendError(f"{source}: unknown settings {unknown}")
        if not isinstance(data.get("ledger_dir"), str) or not data["ledger_dir"]:
            raise SpendError(
                f"{source}.ledger_dir: expected the ledger's folder, got {data.get('ledger_dir')!r}"
            )
        budgets = data.get("budgets_usd") or {}
        if not isinstance(budgets, Mapping):
            raise SpendError(f"{source}.budgets_usd: expected {{scope: USD}}, got {budgets!r}")
        for scope in budgets:
            if scope not in SCOPES:
                raise SpendError(f"{source}.budgets_usd.{scope}: unknown scope; allowed: {list(SCOPES)}")
        groups = data.get("groups") or {}
        if not isinstance(groups, Mapping):
            raise SpendError(f"{source}.groups: expected {{model group: {{tier, prices}}}}, got {groups!r}")
        parsed = {}
        for name, info in groups.items():
            where = f"{source}.groups.{name}"
            if not isinstance(info, Mapping) or not isinstance(info.get("tier"), str):
                raise SpendError(f"{where}: expected {{tier, input_cost_per_token, output_cost_per_token}}")
            prices = {
                key: _number(info[key], f"{where}.{key}", positive=False)
                for key in ("input_cost_per_token", "output_cost_per_token")
                if info.get(key) is not None
            }
            models = info.get("models") or []
            if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
                raise SpendError(f"{where}.models: expected a list of LiteLLM model names, got {models!r}")
            parsed[str(name)] = Group(info["tier"], **prices, models=tuple(models))
        return cls(
            ledger_dir=Path(data["ledger_dir"]),
            groups=parsed,
            budgets={s: _number(v, f"{source}.budgets_usd.{s}", positive=True) for s, v in budgets.items()},
            overrun_ratio=_number(data.get("overrun_ratio", 1.2), f"{source}.overrun_ratio", positive=True),
        )

    def find(self, name: str) -> tuple[str, Group | None]:
        """The group called `name`, else the group one of whose models is `name` (with or without
        its provider prefix): (group name, group), or (name, None)."""
        if name in self.groups:
            return name, self.groups[name]
        for group, info in self.groups.items():
            if any(name in (model, model.split("/", maxsplit=1)[-1]) for model in info.models):
                return group, info
        return name, None

    @classmethod
    def load(cls, path: str | Path) -> SpendConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SpendError(f"{path}: cannot read the spend settings ({exc.strerror})") from None
        except ValueError as exc:
            raise SpendError(f"{path}: not JSON ({exc})") from None
        return cls.from_mapping(data, str(path))


@dataclass(frozen=True)
class Entry:
    """One successful call in the ledger."""

    t: float
    tier: str
    group: str
    deployment: str
    key: str
    route: str
    prompt_tokens: int
    completion_tokens: int
    usd: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


def month_of(t: float) -> str:
    """The UTC calendar month of a timestamp, ``YYYY-MM``."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m")


def month_share(t: float) -> float:
    """The share of its UTC month that has passed at ``t`` (0 at the first instant, towards 1)."""
    now = dt.datetime.fromtimestamp(t, dt.UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(now.year, now.month)[1]
    return (now - start).total_seconds() / (days * 86400)


def key_id(value: Any) -> str:
    """A client key as it may appear: the first 12 hex digits of its sha256, or ``unknown``."""
    if not isinstance(value, str) or not value:
        return "unknown"
    digest = value if _HEX64.match(value) else hashlib.sha256(value.encode()).hexdigest()
    return digest[:12]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def entry_from_call(kwargs: Mapping[str, Any], response: Any, config: SpendConfig, now: float) -> Entry:
    """A ledger entry from LiteLLM's success-callback arguments (see the module docstring for prices).

    Reads ``kwargs["standard_logging_object"]`` (model group, deployment id, tokens, the key's
    hash, cache hit, response cost) and falls back to ``litellm_params.metadata`` and the
    response's usage for what it lacks.
    """
    slo = _mapping(kwargs.get("standard_logging_object"))
    metadata = _mapping(_mapping(kwargs.get("litellm_params")).get("metadata"))
    group = str(slo.get("model_group") or metadata.get("model_group") or kwargs.get("model") or "")
    deployment = str(slo.get("model_id") or _mapping(metadata.get("model_info")).get("id") or "")
    prompt, completion = token_count(slo.get("prompt_tokens")), token_count(slo.get("completion_tokens"))
    if not prompt and not completion:
        prompt, completion = usage_tokens(response)
    key_hash = _mapping(slo.get("metadata")).get("user_api_key_hash") or metadata.get("user_api_key_hash")
    route = _mapping(metadata.get("aiswarm_route")).get("tier") or "passthrough"
    cost = kwargs.get("response_cost", slo.get("response_cost"))
    cost = float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) and cost > 0 else 0.0
    group, info = config.find(group)
    if slo.get("cache_hit") is True:
        usd = 0.0
    elif info is None:
        usd = cost
    elif not info.paid:
        usd = 0.0
    else:
        usd = cost or info.price(prompt, completion)
    return Entry(
        t=now,
        tier=info.tier if info else "unknown",
        group=group,
        deployment=deployment,
        key=key_id(key_hash),
        route=str(route),
        prompt_tokens=prompt,
        completion_tokens=completion,
        usd=usd,
    )


@dataclass
class Totals:
    """A month's spend and requests, in total and per tier, model group and client key."""

    month: str
    usd: float = 0.0
    requests: int = 0
    by_tier: dict[str, float] = field(default_factory=dict)
    by_group: dict[str, float] = field(default_factory=dict)
    by_key: dict[str, float] = field(default_factory=dict)

    def add(self, entry: Mapping[str, Any]) -> None:
        usd = float(entry["usd"])
        self.usd += usd
        self.requests += 1
        for table, name in (
            (self.by_tier, entry["tier"]),
            (self.by_group, entry["group"]),
            (self.by_key, entry["key"]),
        ):
            table[str(name)] = table.get(str(name), 0.0) + usd


def _row(line: str, where: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise SpendError(f"{where}: not JSON ({exc})") from None
    if not isinstance(row, dict) or not all(k in row for k in ("usd", "tier", "group", "key")):
        raise SpendError(f"{where}: expected a ledger entry with usd, tier, group and key")
    if isinstance(row["usd"], bool) or not isinstance(row["usd"], int | float):
        raise SpendError(f"{where}.usd: expected a number, got {row['usd']!r}")
    return row


class Ledger:
    """The month files of one ledger folder, shared by every gateway worker (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._totals: Totals | None = None
        self._offset = 0

    def path(self, month: str) -> Path:
        return self.directory / f"spend-{month}.jsonl"

    def append(self, entry: Entry) -> None:
        """Append one entry under an exclusive lock, so lines of concurrent workers never interleave."""
        self.directory.mkdir(parents=True, exist_ok=True)
        data = (entry.to_json() + "\n").encode()
        fd = os.open(self.path(month_of(entry.t)), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, data)
        finally:
            os.close(fd)  # closing releases the lock

    def totals(self, now: float) -> Totals:
        """The month of ``now`` so far, every worker's entries included (see `month_totals`)."""
        return self.month_totals(month_of(now))

    def month_totals(self, month: str) -> Totals:
        """A month's totals: reads only what was appended since the last call for the same month
        (another month starts again from the start of its file)."""
        if self._totals is None or self._totals.month != month:
            self._totals, self._offset = Totals(month), 0
        try:
            with self.path(month).open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return self._totals
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next call
        for number, line in enumerate(complete.decode().splitlines(), start=1):
            if line.strip():
                self._totals.add(_row(line, f"{self.path(month)} (from byte {self._offset}, line {number})"))
        self._offset += len(complete)
        return self._totals


@dataclass(frozen=True)
class BudgetState:
    scope: str
    budget: float
    spent: float
    plan: float
    overrun: bool
    stopped: bool


def budget_states(totals: Totals, config: SpendConfig, now: float) -> list[BudgetState]:
    """Each budget's plan (budget x elapsed share of the month), overrun and stop."""
    share = month_share(now)
    states = []
    for scope, budget in config.budgets.items():
        spent = totals.usd if scope == "swarm" else totals.by_tier.get(scope, 0.0)
        plan = budget * share
        states.append(
            BudgetState(
                scope, budget, spent, plan, spent > 0 and spent > config.overrun_ratio * plan, spent >= budget
            )
        )
    return states


def blocked_groups(states: Sequence[BudgetState], config: SpendConfig, month: str) -> dict[str, str]:
    """Paid model groups a spent budget stops, each with the reason a client may read."""
    blocked: dict[str, str] = {}
    for state in states:
        if not state.stopped:
            continue
        why = f"the {state.scope} budget of {usd(state.budget)} for {month} is spent ({usd(state.spent)})"
        for name, group in config.groups.items():
            if group.paid and (state.scope == "swarm" or group.tier == state.scope):
                blocked.setdefault(name, why)
    return blocked


def usd(value: float) -> str:
    """Dollars for people: cents from a cent up, six decimals below (a lab's tiny budgets)."""
    return f"${value:,.2f}" if value >= 0.01 else f"${value:.6f}"


def stop_message(group: str, why: str) -> str:
    """What a client reads when it asks for a paid group a spent budget stopped."""
    return (
        f"spend guard: model group '{group}' is a paid tier and {why}; ask for swarm-auto or a free or "
        "local model group, or raise litellm_spend_budgets_usd"
    )


class SpendGuard:
    """The ledger, the budgets and the metrics of one gateway worker."""

    def __init__(self, config: SpendConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.ledger = Ledger(config.ledger_dir)
        self.clock = clock

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SpendGuard | None:
        """From ``AISWARM_SPEND_CONFIG``; None when it is not set (no spend accounting)."""
        environ = os.environ if environ is None else environ
        path = environ.get("AISWARM_SPEND_CONFIG")
        return cls(SpendConfig.load(path)) if path else None

    def record(self, kwargs: Mapping[str, Any], response: Any) -> Entry:
        """Account for one successful call: ledger line and counters, for calls that cost something.

        Local and free calls are not written: at the design's 100 requests a second a line per
        call would grow the ledger by about 50 GB a month, and they add nothing to any budget
        (their traffic is counted by LiteLLM's and the router's own metrics)."""
        entry = entry_from_call(kwargs, response, self.config, self.clock())
        if entry.usd <= 0:
            return entry
        self.ledger.append(entry)
        if _SPEND is not None and _KEY_SPEND is not None:
            _SPEND.labels(tier=entry.tier, model_group=entry.group).inc(entry.usd)
            _KEY_SPEND.labels(key=entry.key).inc(entry.usd)
        return entry

    def may_stop(self, group: str) -> bool:
        """Whether a budget could stop `group`: one is set and the group is paid."""
        info = self.config.groups.get(group)
        return bool(self.config.budgets) and info is not None and info.paid

    def blocked(self) -> dict[str, str]:
        """The paid groups stopped now (group -> reason); refreshes the ledger and the gauges.
        Without budgets nothing can be stopped, and the ledger is not read."""
        if not self.config.budgets:
            return {}
        now = self.clock()
        totals = self.ledger.totals(now)
        states = budget_states(totals, self.config, now)
        if _GAUGES is not None:
            for state in states:
                for name, value in (("month_usd", state.spent), ("budget_usd", state.budget),
                                    ("plan_usd", state.plan), ("overrun", float(state.overrun)),
                                    ("stopped", float(state.stopped))):  # fmt: skip
                    _GAUGES[name].labels(scope=state.scope).set(value)
        return blocked_groups(states, self.config, totals.month)


def render(totals: Totals, states: Sequence[BudgetState]) -> str:
    rows = [f"spend of {totals.month}: ${totals.usd:.6f} over {totals.requests} paid requests"]
    for title, table in (
        ("tier", totals.by_tier),
        ("model group", totals.by_group),
        ("client key", totals.by_key),
    ):
        rows.append(f"by {title}:")
        rows.extend(
            f"  {name:<28} ${usd:>12.6f}" for name, usd in sorted(table.items(), key=lambda kv: -kv[1])
        )
    for state in states:
        flags = [flag for flag, on in (("OVERRUN", state.overrun), ("STOPPED", state.stopped)) if on]
        rows.append(
            f"budget {state.scope}: ${state.spent:.6f} of ${state.budget:.2f}, plan ${state.plan:.6f}"
            + (f" [{', '.join(flags)}]" if flags else "")
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aiswarm.router.spend",
        description="The month's spend per tier, model group and client key (hash prefix) from the ledger.",
    )
    parser.add_argument(
        "--config", type=Path, default=Path(DEFAULT_PATH), help=f"spend settings (default {DEFAULT_PATH})"
    )
    parser.add_argument("--month", help="YYYY-MM (UTC; default: this month)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    now = time.time()
    month = args.month or month_of(now)
    if not _MONTH.match(month) or month > month_of(now):
        parser.error(f"--month: expected YYYY-MM no later than this month, got {month!r}")
    try:
        config = SpendConfig.load(args.config)
        totals = Ledger(config.ledger_dir).month_totals(month)
    except (SpendError, OSError) as exc:
        print(f"spend: {exc}", file=sys.stderr)
        return 2
    # Plans are measured at the month's end for a past month, at now for the current one.
    year, number = map(int, month.split("-"))
    end = dt.datetime(year, number, calendar.monthrange(year, number)[1], 23, 59, 59, tzinfo=dt.UTC)
    states = budget_states(totals, config, min(now, end.timestamp()))
    if args.json:
        print(json.dumps({**asdict(totals), "budgets": [asdict(s) for s in states]}, sort_keys=True))
    else:
        print(render(totals, states))
    return 0


if __name__ == "__main__":
    sys.exit(main())
