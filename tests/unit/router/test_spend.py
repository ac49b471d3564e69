"""Spend without the database: prices, the shared monthly ledger, budgets and the CLI."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aiswarm.router import spend
from aiswarm.router.spend import (
    Entry,
    Ledger,
    SpendConfig,
    SpendError,
    SpendGuard,
    Totals,
    blocked_groups,
    budget_states,
    entry_from_call,
    key_id,
    month_share,
)

GROUPS = {
    "swarm-chat": {"tier": "local"},
    "gemini-flash": {"tier": "free", "models": ["gemini/gemini-2.5-flash"]},
    "hermes": {"tier": "premium", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
    "rocinante": {"tier": "specialized", "input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7},
    "cydonia": {"tier": "specialized"},
}
KEY = "sk-client-secret-value"
KEY_HASH = "a" * 64
# 2026-06 has 30 days: the 16th at 00:00 UTC is exactly half of it.
MID_JUNE = dt.datetime(2026, 6, 16, tzinfo=dt.UTC).timestamp()
JULY = dt.datetime(2026, 7, 1, 0, 0, 1, tzinfo=dt.UTC).timestamp()


def config(tmp_path: Path, **budgets: float) -> SpendConfig:
    data = {"ledger_dir": str(tmp_path / "ledger"), "groups": GROUPS, "budgets_usd": budgets}
    return SpendConfig.from_mapping(data)


def call(group: str, prompt: int = 1000, completion: int = 500, **extra: Any) -> dict[str, Any]:
    slo = {"model_group": group, "model_id": f"{group}.key1", "prompt_tokens": prompt,
           "completion_tokens": completion, "metadata": {"user_api_key_hash": KEY_HASH}}  # fmt: skip
    slo.update(extra.pop("slo", {}))
    return {"standard_logging_object": slo, "litellm_params": {"metadata": {}}, **extra}


@pytest.mark.parametrize(
    ("kwargs", "tier", "usd"),
    [
        (call("hermes"), "premium", 1000 * 1e-6 + 500 * 2e-6),  # no response_cost: the catalog's price
        (call("hermes", response_cost=0.5), "premium", 0.5),  # LiteLLM's own cost wins when above 0
        (call("hermes", response_cost=0.0), "premium", 0.002),
        (call("gemini-flash", response_cost=0.01), "free", 0.0),  # free by the catalog, whatever the map says
        (call("swarm-chat", response_cost=0.01), "local", 0.0),
        (call("cydonia", response_cost=0.03), "specialized", 0.03),  # a paid tier without a catalog price
        (call("cydonia"), "specialized", 0.0),
        (call("hermes", response_cost=0.5, slo={"cache_hit": True}), "premium", 0.0),
        (call("stranger", response_cost=0.25), "unknown", 0.25),
    ],
)
def test_what_a_call_costs(tmp_path: Path, kwargs: dict[str, Any], tier: str, usd: float) -> None:
    entry = entry_from_call(kwargs, None, config(tmp_path), MID_JUNE)
    assert (entry.tier, entry.usd) == (tier, pytest.approx(usd))


def test_entry_names_deployment_route_and_key_hash_but_never_the_key(tmp_path: Path) -> None:
    metadata = {"model_group": "hermes", "model_info": {"id": "hermes.openrouter.key0"},
                "user_api_key_hash": KEY, "aiswarm_route": {"tier": "complex"}}  # fmt: skip
    kwargs = {"model": "hermes", "litellm_params": {"metadata": metadata}}
    response = SimpleNamespace(usage=SimpleNamespace(prompt_tokens=10, completion_tokens=20))
    entry = entry_from_call(kwargs, response, config(tmp_path), MID_JUNE)
    assert (entry.group, entry.deployment, entry.route) == ("hermes", "hermes.openrouter.key0", "complex")
    assert (entry.prompt_tokens, entry.completion_tokens) == (10, 20)
    assert entry.key == key_id(KEY) and len(entry.key) == 12 and KEY not in entry.to_json()
    assert entry_from_call(call("hermes"), None, config(tmp_path), MID_JUNE).key == "a" * 12
    assert key_id(None) == "unknown"


def test_ledger_is_shared_by_workers_and_survives_a_restart(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    first, second = Ledger(cfg.ledger_dir), Ledger(cfg.ledger_dir)
    first.append(entry_from_call(call("hermes", response_cost=1.0), None, cfg, MID_JUNE))
    assert second.totals(MID_JUNE).usd == pytest.approx(1.0)
    second.append(entry_from_call(call("rocinante", response_cost=0.5), None, cfg, MID_JUNE + 1))
    second.append(entry_from_call(call("gemini-flash"), None, cfg, MID_JUNE + 2))
    seen = first.totals(MID_JUNE + 3)
    assert (seen.usd, seen.requests) == (pytest.approx(1.5), 3)
    assert seen.by_tier == {"premium": 1.0, "specialized": 0.5, "free": 0.0}
    assert seen.by_key == {"a" * 12: 1.5}
    restarted = Ledger(cfg.ledger_dir).totals(MID_JUNE + 4)
    assert (restarted.usd, restarted.requests) == (pytest.approx(1.5), 3)
    assert Ledger(cfg.ledger_dir).totals(JULY).usd == 0.0  # a new month starts from nothing


def test_a_line_still_being_written_is_read_on_the_next_refresh(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    line = Entry(MID_JUNE, "premium", "hermes", "d", "k", "r", 1, 1, 2.0).to_json()
    path = ledger.path("2026-06")
    path.write_text(line[:20], encoding="utf-8")
    assert ledger.totals(MID_JUNE).requests == 0
    path.write_text(line + "\n", encoding="utf-8")
    assert ledger.totals(MID_JUNE).usd == 2.0


def test_a_corrupt_ledger_line_names_the_file_and_line(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.path("2026-06").write_text(
        '{"usd": "x", "tier": "a", "group": "b", "key": "c"}\n', encoding="utf-8"
    )
    with pytest.raises(SpendError, match=r"spend-2026-06\.jsonl .*line 1\)\.usd: expected a number"):
        ledger.totals(MID_JUNE)


def _append_many(directory: str, worker: int) -> None:
    ledger = Ledger(Path(directory))
    for i in range(200):
        ledger.append(Entry(MID_JUNE, "premium", f"g{worker}", "d", "k", "r", i, i, 0.001))


def test_concurrent_workers_never_interleave_lines(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(str(tmp_path), w)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(30)
    totals = Ledger(tmp_path).totals(MID_JUNE)
    assert totals.requests == 800 and totals.usd == pytest.approx(0.8)
    assert totals.by_group == {f"g{w}": pytest.approx(0.2) for w in range(4)}


def test_month_share() -> None:
    assert month_share(MID_JUNE) == pytest.approx(0.5)
    assert month_share(dt.datetime(2026, 2, 1, tzinfo=dt.UTC).timestamp()) == 0.0


def totals(usd_by_tier: dict[str, float]) -> Totals:
    result = Totals("2026-06")
    for tier, usd in usd_by_tier.items():
        result.add({"usd": usd, "tier": tier, "group": tier, "key": "k"})
    return result


@pytest.mark.parametrize(
    ("spent", "overrun", "stopped"),
    [(5.9, False, False), (6.1, True, False), (10.0, True, True), (0.0, False, False)],
)
def test_overrun_is_20_percent_over_plan_and_the_stop_is_the_budget(
    tmp_path: Path, spent: float, overrun: bool, stopped: bool
) -> None:
    # Half the month has passed: the plan is 5.00 of 10.00, the alert starts above 6.00.
    (state,) = budget_states(totals({"premium": spent}), config(tmp_path, premium=10.0), MID_JUNE)
    assert state.plan == pytest.approx(5.0)
    assert (state.overrun, state.stopped) == (overrun, stopped)


def test_the_overrun_ratio_is_configurable(tmp_path: Path) -> None:
    cfg = SpendConfig.from_mapping(
        {"ledger_dir": str(tmp_path), "budgets_usd": {"swarm": 10}, "overrun_ratio": 1.5}
    )
    (state,) = budget_states(totals({"premium": 7.0}), cfg, MID_JUNE)
    assert not state.overrun


def test_a_spent_tier_budget_stops_that_tiers_paid_groups_and_the_swarm_budget_every_paid_group(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, premium=1.0, swarm=5.0)
    premium_spent = budget_states(totals({"premium": 1.0}), cfg, MID_JUNE)
    blocked = blocked_groups(premium_spent, cfg, "2026-06")
    assert sorted(blocked) == ["hermes"]
    assert blocked["hermes"] == "the premium budget of $1.00 for 2026-06 is spent ($1.00)"
    all_spent = blocked_groups(
        budget_states(totals({"premium": 1.0, "specialized": 4.0}), cfg, MID_JUNE), cfg, "x"
    )
    assert sorted(all_spent) == ["cydonia", "hermes", "rocinante"]  # never the free or local groups
    assert "swarm budget" in all_spent["rocinante"]


def test_guard_stops_at_the_budget_and_lifts_in_a_new_month_or_with_a_raised_budget(tmp_path: Path) -> None:
    now = [MID_JUNE]
    guard = SpendGuard(config(tmp_path, premium=0.01), clock=lambda: now[0])
    assert guard.blocked() == {}
    guard.record(call("hermes", response_cost=0.006), None)
    assert guard.blocked() == {}
    other_worker = SpendGuard(config(tmp_path, premium=0.01), clock=lambda: now[0])
    other_worker.record(call("hermes", response_cost=0.006), None)
    assert "hermes" in guard.blocked()  # this worker sees the other's spend
    raised = SpendGuard(config(tmp_path, premium=1.0), clock=lambda: now[0])
    assert raised.blocked() == {}
    now[0] = JULY
    assert guard.blocked() == {}


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            {"budgets_usd": {"swarm": "twenty"}},
            "spend.budgets_usd.swarm: expected a number > 0, got 'twenty'",
        ),
        ({"budgets_usd": {"premium": 0}}, "spend.budgets_usd.premium: expected a number > 0, got 0"),
        ({"budgets_usd": {"gold": 1}}, "spend.budgets_usd.gold: unknown scope"),
        ({"overrun_ratio": -1}, "spend.overrun_ratio: expected a number > 0"),
        (
            {"groups": {"x": {"tier": "premium", "input_cost_per_token": "1"}}},
            "spend.groups.x.input_cost_per_token",
        ),
        ({"groups": {"x": "premium"}}, "spend.groups.x: expected {tier"),
        ({"ledger": "/tmp"}, "spend: unknown settings ['ledger']"),
        ({"ledger_dir": ""}, "spend.ledger_dir: expected the ledger's folder"),
    ],
)
def test_bad_settings_name_the_field(data: dict[str, Any], error: str) -> None:
    with pytest.raises(SpendError) as err:
        SpendConfig.from_mapping({"ledger_dir": "/var/lib/litellm/spend", **data})
    assert str(err.value).startswith(error)


def test_guard_from_env(tmp_path: Path) -> None:
    path = tmp_path / "spend.json"
    path.write_text(json.dumps({"ledger_dir": str(tmp_path), "budgets_usd": {"swarm": 2}}), encoding="utf-8")
    guard = SpendGuard.from_env({"AISWARM_SPEND_CONFIG": str(path)})
    assert guard is not None and guard.config.budgets == {"swarm": 2.0}
    assert SpendGuard.from_env({}) is None
    with pytest.raises(SpendError, match="cannot read"):
        SpendGuard.from_env({"AISWARM_SPEND_CONFIG": str(tmp_path / "missing.json")})


def test_cli_prints_the_months_spend_per_tier_group_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, premium=1.0)
    path = tmp_path / "spend.json"
    path.write_text(json.dumps({"ledger_dir": str(cfg.ledger_dir), "groups": GROUPS,
                                "budgets_usd": {"premium": 1.0}}), encoding="utf-8")  # fmt: skip
    ledger = Ledger(cfg.ledger_dir)
    kwargs = call("hermes", response_cost=1.25, slo={"metadata": {"user_api_key_hash": KEY}})
    ledger.append(entry_from_call(kwargs, None, cfg, MID_JUNE))
    assert spend.main(["--config", str(path), "--month", "2026-06"]) == 0
    text = capsys.readouterr().out
    assert "spend of 2026-06: $1.250000 over 1 paid requests" in text
    assert "premium" in text and "hermes" in text and key_id(KEY) in text and KEY not in text
    assert "budget premium: $1.250000 of $1.00" in text and "OVERRUN, STOPPED" in text
    assert spend.main(["--config", str(path), "--month", "2026-06", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["by_group"] == {"hermes": 1.25} and data["budgets"][0]["plan"] == pytest.approx(1.0, abs=1e-3)
    assert spend.main(["--config", str(tmp_path / "none.json")]) == 2
    with pytest.raises(SystemExit):
        spend.main(["--config", str(path), "--month", "June"])


def test_calls_that_cost_nothing_are_not_written(tmp_path: Path) -> None:
    guard = SpendGuard(config(tmp_path, swarm=1.0), clock=lambda: MID_JUNE)
    for group in ("swarm-chat", "gemini-flash", "cydonia"):
        assert guard.record(call(group), None).usd == 0.0
    assert not list((tmp_path / "ledger").glob("*")) or all(
        f.stat().st_size == 0 for f in (tmp_path / "ledger").iterdir()
    )
    guard.record(call("hermes", response_cost=0.25), None)
    assert guard.ledger.totals(MID_JUNE).requests == 1


def test_a_call_named_by_its_model_not_its_group_is_priced_by_the_group(tmp_path: Path) -> None:
    """LiteLLM's background health checks log the provider's model name ("gemini-2.5-flash") as
    the group: the catalog's free tier still applies, not LiteLLM's price map."""
    entry = entry_from_call(call("gemini-2.5-flash", response_cost=0.00016), None, config(tmp_path), MID_JUNE)
    assert (entry.group, entry.tier, entry.usd) == ("gemini-flash", "free", 0.0)
    with pytest.raises(SpendError, match=r"spend.groups.x.models: expected a list of LiteLLM model names"):
        SpendConfig.from_mapping(
            {"ledger_dir": "/l", "groups": {"x": {"tier": "free", "models": "gemini/x"}}}
        )


@pytest.mark.parametrize(("value", "text"), [(15.0, "$15.00"), (1234.5, "$1,234.50"), (0.0005, "$0.000500")])
def test_dollars_keep_a_tiny_budget_readable(value: float, text: str) -> None:
    assert spend.usd(value) == text


def test_without_budgets_the_ledger_is_not_read_and_nothing_can_stop(tmp_path: Path) -> None:
    guard = SpendGuard(config(tmp_path), clock=lambda: MID_JUNE)
    guard.ledger.directory.mkdir(parents=True)
    guard.ledger.path("2026-06").write_text("not json\n", encoding="utf-8")  # would raise if read
    assert guard.blocked() == {}
    assert not guard.may_stop("hermes")
    budgeted = SpendGuard(config(tmp_path, premium=1.0), clock=lambda: MID_JUNE)
    assert budgeted.may_stop("hermes") and budgeted.may_stop("rocinante")
    assert not budgeted.may_stop("gemini-flash") and not budgeted.may_stop("swarm-chat")
    with pytest.raises(SpendError, match="not JSON"):
        budgeted.blocked()
