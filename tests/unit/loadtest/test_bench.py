"""The benchmark command's pieces that run without a lab: arguments, the Markdown, the docs update."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aiswarm_loadtest import bench


def _summary(rps: float, ttft_p50: float, requests: int = 100, error_rate: float = 0.0) -> dict[str, Any]:
    dist = {"count": requests, "p50": ttft_p50, "p95": ttft_p50 * 2, "p99": ttft_p50 * 3}
    return {"requests": requests, "error_rate": error_rate, "rps": rps, "ttft": dist, "e2e": dist}


def _run(path: str, users: int, rps: float, ttft: float, cores: float | None = None) -> dict[str, Any]:
    return {
        "path": path,
        "users": users,
        "duration_s": 30,
        "exit": 0,
        "summary": _summary(rps, ttft),
        "gates": [],
        "gateway_cpu_cores": cores,
    }


REPORT: dict[str, Any] = {
    "machine": {
        "date": "2026-11-25 18:00 UTC",
        "cpu": "Test CPU",
        "cores": 2,
        "memory_gib": 23.5,
        "gpu": "none",
        "kernel": "6.1",
        "python": "3.11",
        "commit": "abc1234",
        "load_average": [0.5, 0.4, 0.3],
    },
    "steps": {
        "calibrate": {
            "ttft_configured_ms": 50.0,
            "ttft_p50_ms": 51.25,
            "ttft_p95_ms": 53.0,
            "error_ms": 1.25,
            "tolerance_ms": 1.0,
            "within": False,
            "itl_p50_ms": 10.02,
            "itl_configured_ms": 10.0,
            "send_lag_p95_ms": 0.4,
            "requests": 4000,
            "load_average": [1.0, 1.0, 1.0],
        },
        "overhead": {
            "backend": {"ttft_ms": 50, "itl_ms": 10, "tokens": 16},
            "runs": [
                _run("direct", 50, 230.0, 0.0514),
                _run("gateway", 50, 28.9, 0.9725, cores=0.98),
            ],
        },
        "load": {
            "users": 50,
            "duration_s": 60,
            "exit": 1,
            "summary": {
                **_summary(19.0, 1.4, requests=1100, error_rate=0.01),
                "failures": {"timeout_before_first_token": 9, "cut_without_done": 2},
            },
            "gates": ["ttft p95 2800 100 FAIL (2700 ms over)"],
        },
        "rate": {"error": "rate: Locust recorded no requests"},
        "chaos": {
            "scenarios": [
                {
                    "scenario": "kill_primary_engine",
                    "outcome": "passed",
                    "measurements": {
                        "failed_during_fault": 0,
                        "failed_total": 0,
                        "requests_total": 2635,
                        "failover_s": 0.12,
                        "hung_routing_s": None,
                        "failback_s": 22.4,
                        "recovery_s": 6.2,
                        "broken_streams": 0,
                        "availability": {"downtime_s": 0.0, "error_budget_burned": 0.0},
                    },
                    "gates": [{"name": "failover_within_s", "passed": True}],
                },
                {
                    "scenario": "latency_inference_node",
                    "outcome": "aborted",
                    "measurements": None,
                    "gates": [],
                    "notes": ["aborted: the node's kernel has no netem qdisc"],
                },
                {
                    "scenario": "stop_redis",
                    "outcome": "failed",
                    "measurements": None,
                    "gates": [{"name": "data_loss", "passed": False, "detail": "data lost: True"}],
                },
            ]
        },
    },
}


def test_render_has_the_machine_every_step_and_the_failed_gates() -> None:
    text = bench.render(REPORT, "python -m aiswarm_loadtest.bench")
    assert "Test CPU, 2 cores, 23.5 GiB, GPU: none" in text
    assert "commit abc1234" in text
    assert "error **+1.25 ms**, tolerance 1 ms: outside" in text
    assert "| gateway | 50 | 28.9 | 972.5 ms |" in text
    assert (
        "the gateway adds 921.1 ms at the TTFT median "
        "(28.9 vs 230.0 req/s; the gateway process used 0.98 cores)" in text
    )
    assert "- gate ttft p95 2800 100 FAIL (2700 ms over)" in text
    assert "| load | 50 | 19.0 | 1400.0 ms |" in text
    assert "11 of 1100" in text
    assert "Failed requests by class: cut_without_done 2, timeout_before_first_token 9." in text
    assert "### rate\n\nCould not run: rate: Locust recorded no requests" in text
    assert (
        "| kill_primary_engine | passed | 0 | 0 of 2635 | 0.12 s | n/a | 22.40 s | 6.20 s "
        "| 0 | 0.00 s | 0.00% | - |" in text
    )
    assert "| stop_redis | failed | n/a | n/a of n/a |" in text
    assert "data_loss (data lost: True)" in text
    assert "- latency_inference_node (aborted): aborted: the node's kernel has no netem qdisc" in text


def test_update_docs_replaces_only_the_marked_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        f"# Title\n\nkept\n\n{bench.BEGIN}\nold\n{bench.END}\n\n## After\nalso kept\n", encoding="utf-8"
    )
    bench.update_docs(doc, "new section\n")
    text = doc.read_text(encoding="utf-8")
    assert "old" not in text
    assert f"{bench.BEGIN}\nnew section\n{bench.END}\n" in text
    assert text.startswith("# Title\n\nkept\n") and text.endswith("## After\nalso kept\n")
    bench.update_docs(doc, "newer\n")
    assert doc.read_text(encoding="utf-8").count(bench.BEGIN) == 1


def test_update_docs_appends_the_markers_when_absent(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Title\n", encoding="utf-8")
    bench.update_docs(doc, "section\n")
    assert doc.read_text(encoding="utf-8") == f"# Title\n\n{bench.BEGIN}\nsection\n{bench.END}\n"


@pytest.mark.parametrize("steps", ["load,warp", "", ","])
def test_unknown_steps_are_refused_before_anything_runs(
    steps: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--steps", steps, "--out", str(tmp_path / "out")]) == 2
    assert "--steps" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_missing_key_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AISWARM_BENCH_TEST_KEY", raising=False)
    argv = ["--steps", "load", "--api-key-env", "AISWARM_BENCH_TEST_KEY", "--out", str(tmp_path / "out")]
    assert bench.main(argv) == 2
    assert "AISWARM_BENCH_TEST_KEY: the variable is not set or empty" in capsys.readouterr().err


def test_missing_scenarios_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--steps", "chaos", "--scenarios", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]
    assert bench.main(argv) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_machine_names_no_host() -> None:
    info = bench.machine()
    assert set(info) == {
        "date",
        "cpu",
        "cores",
        "memory_gib",
        "gpu",
        "kernel",
        "python",
        "commit",
        "load_average",
    }
    assert isinstance(info["cores"], int) and info["cores"] >= 1


def test_gate_lines_are_read_from_the_locust_output() -> None:
    output = (
        "Aggregated   4629   0(0.00%) | 1232\n"
        "gate                measured       limit  result\n"
        "error rate                 0        0.01  PASS\n"
        "ttft p95                2033         100  FAIL (1933 ms over)\n"
        "aiswarm: records in /tmp/x\n"
        "Aggregated 1400 1600\n"
    )
    assert bench.gate_lines(output) == ["error rate 0 0.01 PASS", "ttft p95 2033 100 FAIL (1933 ms over)"]


def test_steps_run_in_the_canonical_order() -> None:
    assert bench._steps("rate,calibrate,chaos") == ["calibrate", "chaos", "rate"]
