"""Cost arithmetic of the spend report against an all-premium baseline, on fixtures."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiswarm.router.records import CallRecord
from aiswarm.router.report import (
    Price,
    ReportError,
    build_report,
    main,
    prices_from_config,
    records_from_jsonl,
    records_from_spend_logs,
)

CONFIG: dict[str, Any] = {
    "model_list": [
        {"model_name": "swarm-chat", "litellm_params": {}, "model_info": {"id": "local"}},
        {
            "model_name": "hermes-405b",
            "model_info": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
        },
        {"model_name": "hermes-405b", "model_info": {"input_cost_per_token": 9.0}},
        {
            "model_name": "gemini-flash",
            "model_info": {"input_cost_per_token": 1e-7, "output_cost_per_token": 4e-7},
        },
    ]
}
PRICES = prices_from_config(CONFIG)


def rec(model: str, tier: str, p: int, c: int, spend: float | None = None) -> CallRecord:
    return CallRecord("id", model, tier, "", p, c, spend)


def test_prices_take_the_first_deployment_of_a_group() -> None:
    assert PRICES["hermes-405b"] == Price(1e-6, 2e-6)
    assert PRICES["swarm-chat"] == Price(0.0, 0.0)


def test_report_arithmetic() -> None:
    records = [
        rec("swarm-chat", "simple", 1000, 1000),  # local: free; baseline 1000*1e-6 + 1000*2e-6 = 0.003
        rec("gemini-flash", "simple", 1000, 500),  # 1e-4 + 2e-4 = 3e-4; baseline 0.002
        rec("hermes-405b", "complex", 500, 500, spend=0.01),  # recorded spend wins here; baseline 0.0015
    ]
    report = build_report(records, PRICES, "hermes-405b", recorded=True)
    assert report.total.requests == 3
    assert report.total.actual == pytest.approx(0.0103)
    assert report.total.baseline == pytest.approx(0.0065)
    assert report.by_tier["simple"].actual == pytest.approx(3e-4)
    assert report.by_tier["simple"].baseline == pytest.approx(0.005)
    assert report.by_tier["complex"].prompt_tokens == 500
    assert report.savings == pytest.approx(1 - 0.0103 / 0.0065)


def test_listed_groups_are_priced_from_the_config_not_from_litellms_cost_map() -> None:
    """A free tier LiteLLM priced at the provider's paid rate costs 0; an unlisted group costs its spend."""
    records = [
        rec("swarm-chat", "research", 1000, 1000, spend=0.5),  # listed, no price: 0
        rec("hermes-405b", "complex", 500, 500, spend=0.01),  # listed: 500*1e-6 + 500*2e-6 = 0.0015
        rec("not-in-config", "simple", 10, 10, spend=0.002),
    ]
    report = build_report(records, PRICES, "hermes-405b")
    assert report.by_tier["research"].actual == 0
    assert report.by_tier["complex"].actual == pytest.approx(0.0015)
    assert report.by_tier["simple"].actual == pytest.approx(0.002)


def test_all_local_workload_saves_everything() -> None:
    report = build_report([rec("swarm-chat", "research", 100, 100)], PRICES, "hermes-405b")
    assert report.savings == pytest.approx(1.0)


def test_empty_workload_has_zero_savings() -> None:
    assert build_report([], PRICES, "hermes-405b").savings == 0.0


def test_unknown_baseline_is_refused() -> None:
    with pytest.raises(ReportError, match="--baseline-model: 'gpt-x'"):
        build_report([], PRICES, "gpt-x")


def test_bad_price_names_the_deployment() -> None:
    with pytest.raises(ReportError, match=r"model_list\[0\].model_info"):
        prices_from_config({"model_list": [{"model_name": "a", "model_info": {"input_cost_per_token": "1"}}]})


def test_jsonl_parsing_and_errors() -> None:
    lines = [
        json.dumps(
            {"model_group": "swarm-chat", "tier": "simple", "prompt_tokens": 1, "completion_tokens": 2}
        ),
        "",
    ]
    assert records_from_jsonl(lines, "log")[0].completion_tokens == 2
    with pytest.raises(ReportError, match="log:2: not JSON"):
        records_from_jsonl(["{}", "{"], "log")
    with pytest.raises(ReportError, match=r"log:1.prompt_tokens"):
        records_from_jsonl([json.dumps({"prompt_tokens": -5})], "log")


def test_spend_log_rows_take_the_tier_from_metadata_or_tags() -> None:
    rows = [
        {
            "model_group": "hermes-405b",
            "spend": 0.2,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "metadata": {"spend_logs_metadata": {"aiswarm_route": {"tier": "complex"}}},
        },
        {
            "model": "gemini-flash",
            "spend": 0,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "metadata": "{}",
            "request_tags": ["team", "aiswarm-route:batch"],
        },
        {"model_group": "swarm-chat", "prompt_tokens": 1, "completion_tokens": 1, "metadata": "not json"},
    ]
    records = records_from_spend_logs(rows)
    assert [r.tier for r in records] == ["complex", "batch", "passthrough"]
    assert [r.model_group for r in records] == ["hermes-405b", "gemini-flash", "swarm-chat"]
    with pytest.raises(ReportError, match="expected a JSON list"):
        records_from_spend_logs({"data": []})


@pytest.fixture
def spend_server() -> Iterator[str]:
    rows = [
        {
            "model_group": "gemini-flash",
            "spend": 0.001,
            "prompt_tokens": 100,
            "completion_tokens": 100,
            "request_tags": ["aiswarm-route:simple"],
        }
    ]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/spend/logs" and self.headers.get("Authorization") == "Bearer sk-test"
            body = json.dumps(rows if ok else {"error": "unauthorized"}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def test_main_reads_the_spend_logs_api(
    spend_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-test")
    args = [
        "--spend-logs",
        spend_server,
        "--config",
        str(write_config(tmp_path)),
        "--baseline-model",
        "hermes-405b",
    ]
    assert main([*args, "--json", "--recorded-spend"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"]["actual"] == pytest.approx(0.001)
    assert out["total"]["baseline"] == pytest.approx(3e-4)
    assert out["by_tier"]["simple"]["requests"] == 1
    assert main([*args, "--json"]) == 0  # priced from the config: 100 * 1e-7 + 50 * 4e-7 (gemini-flash)
    assert json.loads(capsys.readouterr().out)["total"]["actual"] == pytest.approx(5e-5)


def test_main_text_report_from_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "decisions.jsonl"
    log.write_text(
        json.dumps(
            {
                "model_group": "swarm-chat",
                "tier": "research",
                "prompt_tokens": 10,
                "completion_tokens": 10,
                "spend": 0.0,
            }
        )
        + "\n"
    )
    args = ["--records", str(log), "--config", str(write_config(tmp_path)), "--baseline-model", "hermes-405b"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "research" in out
    assert "savings against the baseline: 100.0 %" in out


def test_main_errors_are_one_line_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LITELLM_MASTER_KEY", raising=False)
    config = str(write_config(tmp_path))
    assert (
        main(["--spend-logs", "http://127.0.0.1:9", "--config", config, "--baseline-model", "hermes-405b"])
        == 2
    )
    assert "$LITELLM_MASTER_KEY is empty" in capsys.readouterr().err
    assert (
        main(["--records", str(tmp_path / "nope"), "--config", config, "--baseline-model", "hermes-405b"])
        == 2
    )
    assert "--records" in capsys.readouterr().err
