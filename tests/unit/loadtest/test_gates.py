"""SLO gates pass and fail both ways, and say by how much."""

from __future__ import annotations

import pytest

from aiswarm_loadtest.gates import GateResult, Thresholds, evaluate, format_report
from aiswarm_loadtest.metrics import summarize
from aiswarm_loadtest.records import RequestRecord


def _stream(t: float, ttft: float, e2e: float, ok: bool = True) -> RequestRecord:
    return RequestRecord(
        kind="chat_stream",
        t_intended=t,
        t_start=t,
        t_end=t + e2e,
        ok=ok,
        t_first_token=t + ttft if ok else None,
        output_tokens=10 if ok else 0,
        failure_class=None if ok else "error_before_first_token",
    )


def _gates(records: list[RequestRecord], **limits: float) -> dict[str, GateResult]:
    return {g.name: g for g in evaluate(summarize(records), Thresholds(**limits))}


def test_all_gates_pass() -> None:
    records = [_stream(i * 0.01, 0.050, 0.7) for i in range(100)]
    gates = _gates(records, min_rps=50)
    assert set(gates) == {"error rate", "ttft p95", "e2e p95", "request rate", "empty share"}
    assert all(g.passed for g in gates.values())


def test_ttft_gate_fails_and_reports_the_excess() -> None:
    records = [_stream(i * 0.1, 0.150, 0.7) for i in range(20)]
    gate = _gates(records, ttft_p95_ms=100)["ttft p95"]
    assert not gate.passed
    assert gate.measured == pytest.approx(150.0)
    assert gate.margin == "50 ms over"


@pytest.mark.parametrize(("failed", "passes"), [(1, True), (2, False)])
def test_error_rate_gate_at_the_limit(failed: int, passes: bool) -> None:
    records = [_stream(i * 0.1, 0.05, 0.5, ok=i >= failed) for i in range(100)]
    assert _gates(records, max_error_rate=0.01)["error rate"].passed is passes


def test_e2e_gate_and_rate_gate_fail() -> None:
    records = [_stream(i * 1.0, 0.05, 6.0) for i in range(5)]
    gates = _gates(records, min_rps=100)
    assert not gates["e2e p95"].passed and "ms over" in gates["e2e p95"].margin
    assert not gates["request rate"].passed and "req/s under" in gates["request rate"].margin


def test_rate_gate_off_by_default_and_no_ttft_gate_without_streams() -> None:
    records = [RequestRecord(kind="embeddings", t_intended=0, t_start=0, t_end=0.01, ok=True)]
    assert set(_gates(records)) == {"error rate", "e2e p95", "empty share"}


def _empty(t: float) -> RequestRecord:
    """A stream that ended with [DONE] and no text: a success with no first token."""
    return RequestRecord(kind="chat_stream", t_intended=t, t_start=t, t_end=t + 0.3, ok=True, empty=True)


def test_content_gate_fails_on_one_empty_answer_by_default() -> None:
    records = [_stream(i * 0.1, 0.05, 0.5) for i in range(99)] + [_empty(10.0)]
    summary = summarize(records)
    gate = {g.name: g for g in evaluate(summary, Thresholds())}["empty share"]
    assert summary.empty == 1 and summary.ttft.count == 99
    assert not gate.passed and gate.measured == pytest.approx(0.01)
    text = format_report(summary, evaluate(summary, Thresholds()), [])
    assert "empty answers: 1 of 100 successes carried no text" in text
    assert "empty share" in text and "FAIL" in text


@pytest.mark.parametrize(("empty", "passes"), [(5, True), (6, False)])
def test_content_gate_at_a_raised_limit(empty: int, passes: bool) -> None:
    records = [_stream(i * 0.1, 0.05, 0.5) for i in range(100 - empty)]
    records += [_empty(20.0 + i) for i in range(empty)]
    assert _gates(records, max_empty_share=0.05)["empty share"].passed is passes


def test_empty_run_fails() -> None:
    gates = _gates([])
    assert not gates["error rate"].passed and gates["error rate"].margin == "no samples"
    assert "empty share" not in gates  # no success to judge; the error-rate gate already fails


def test_report_names_the_failed_gate() -> None:
    records = [_stream(i * 0.1, 0.150, 0.7) for i in range(20)]
    summary = summarize(records)
    text = format_report(summary, evaluate(summary, Thresholds()), ["generator CPU high"])
    assert "ttft p95" in text and "FAIL (50 ms over)" in text
    assert "WARNING: generator CPU high" in text
