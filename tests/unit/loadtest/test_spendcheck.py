"""aiswarm_loadtest.spendcheck: the gauges it reads and its refusal of a missing key."""

from __future__ import annotations

import pytest

from aiswarm_loadtest import spendcheck

METRICS = """# HELP aiswarm_spend_month_usd Spend of the current month in USD, from the ledger
# TYPE aiswarm_spend_month_usd gauge
aiswarm_spend_month_usd{scope="premium"} 0.0005088
aiswarm_spend_month_usd{scope="swarm"} 0.9
aiswarm_spend_budget_usd{scope="premium"} 0.0005
aiswarm_spend_plan_usd{scope="premium"} 6.537e-05
aiswarm_spend_overrun{scope="premium"} 1.0
aiswarm_spend_stopped{scope="premium"} 1.0
aiswarm_spend_usd_total{model_group="hermes-3-405b",tier="premium"} 0.0005088
"""


def test_the_gauges_of_one_scope_are_read() -> None:
    assert spendcheck.spend_gauges(METRICS, "premium") == {
        "month_usd": 0.0005088, "budget_usd": 0.0005, "plan_usd": 6.537e-05, "overrun": 1.0, "stopped": 1.0,
    }  # fmt: skip
    assert spendcheck.spend_gauges(METRICS, "swarm") == {"month_usd": 0.9}
    assert spendcheck.spend_gauges(METRICS, "free") == {}


def test_no_key_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("AISWARM_API_KEY", raising=False)
    assert spendcheck.main([]) == 2
    assert "set AISWARM_API_KEY" in capsys.readouterr().err
