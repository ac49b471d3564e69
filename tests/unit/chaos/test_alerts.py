"""Alert gates of the chaos runner, against the real alert sink on loopback and a fake clock."""

from __future__ import annotations

import copy
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aiswarm_loadtest.alertsink import AlertStore, make_handler, records_from_payload
from aiswarm_loadtest.chaos.alerts import AlertSink, alert_gates, alert_times
from aiswarm_loadtest.chaos.scenario import AlertExpect, ScenarioError, parse_scenario

from .test_runner import DOC, make_runner
from .test_scenario import GOOD

EXPECT = AlertExpect("InferenceEngineDown", (("job", "vllm"),), detect_within_s=90, resolve_within_s=60)


def note(status: str, received: float, job: str = "vllm", name: str = "InferenceEngineDown") -> dict:
    return {
        "received": received,
        "status": status,
        "alertname": name,
        "labels": {"alertname": name, "job": job},
    }


def test_detect_and_resolve_times_are_measured_from_the_fault() -> None:
    records = [
        note("firing", 990.0),  # an earlier episode does not count
        note("firing", 1040.0, job="llamacpp"),  # other labels do not count
        note("firing", 1045.5),
        note("firing", 1055.0),  # a repeat
        note("resolved", 1082.0),
    ]
    times = alert_times(records, EXPECT, fault_start=1000.0, fault_end=1030.0)
    assert (times.detect_s, times.resolve_s, times.notifications) == (45.5, 52.0, 3)
    gates = {g.name: g for g in alert_gates(EXPECT, times)}
    assert gates["alert_detect_within_s"].passed and gates["alert_resolve_within_s"].passed


def test_an_alert_that_never_fires_fails_the_gate() -> None:
    times = alert_times([note("firing", 1010.0, job="llamacpp")], EXPECT, 1000.0, 1030.0)
    gates = alert_gates(EXPECT, times)
    assert [(g.name, g.passed) for g in gates] == [("alert_fires", False), ("alert_resolve_within_s", False)]
    assert "never reached the receiver" in gates[0].detail


def test_late_detection_and_no_resolution_fail_their_bounds() -> None:
    times = alert_times([note("firing", 1100.0)], EXPECT, 1000.0, 1030.0)
    gates = {g.name: g for g in alert_gates(EXPECT, times)}
    assert not gates["alert_detect_within_s"].passed and gates["alert_detect_within_s"].measured == 100.0
    assert not gates["alert_resolve_within_s"].passed


def test_an_unreadable_sink_fails_the_gate_with_the_reason() -> None:
    gates = alert_gates(EXPECT, None, "cannot read the alert sink")
    assert [(g.name, g.passed) for g in gates] == [("alert_fires", False)]
    assert "cannot read the alert sink" in gates[0].detail


def test_the_scenario_alert_section_is_parsed_and_checked() -> None:
    doc = {**GOOD, "alert": {"fires": "InferenceEngineDown", "labels": {"service": "${inference_engine}"},
                             "detect_within_s": 90, "resolve_within_s": 120}}  # fmt: skip
    scenario = parse_scenario(doc, "s.yaml")
    assert scenario.alert == AlertExpect("InferenceEngineDown", (("service", "vllm"),), 90, 120)
    bad = {**GOOD, "alert": {"fires": "engine down!", "labels": ["x"], "detect_within_s": -1, "color": 1}}
    with pytest.raises(ScenarioError) as info:
        parse_scenario(bad, "s.yaml")
    text = "\n".join(info.value.errors)
    for fragment in ("alert.fires", "alert.labels", "alert.detect_within_s", "alert.color"):
        assert fragment in text


def test_payloads_from_alertmanager_are_recorded_per_alert() -> None:
    payload = {"receiver": "lab-sink", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "TargetDown", "job": "node"},
         "annotations": {"summary": "x"}, "startsAt": "2026-12-05T00:00:00Z",
         "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "abc"},
        {"status": "resolved", "labels": {"alertname": "InferenceEngineDown"}},
    ]}  # fmt: skip
    records = records_from_payload(payload, 12.5)
    assert [(r["alertname"], r["status"], r["received"]) for r in records] == [
        ("TargetDown", "firing", 12.5),
        ("InferenceEngineDown", "resolved", 12.5),
    ]
    with pytest.raises(ValueError, match="alerts"):
        records_from_payload({"version": "4"}, 1.0)


@pytest.fixture
def sink_server(tmp_path: Path):
    from http.server import ThreadingHTTPServer

    clock = iter([1001.0, 1050.0, 1099.0])
    store = AlertStore(tmp_path / "alerts.jsonl")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(store, clock=lambda: next(clock)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "alerts.jsonl"
    server.shutdown()
    server.server_close()


def post(url: str, payload: dict) -> int:
    request = urllib.request.Request(
        f"{url}/alerts", data=json.dumps(payload).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status


def test_the_sink_records_webhooks_and_the_runner_reads_them(sink_server) -> None:
    url, log = sink_server
    sink = AlertSink(url)
    assert sink.check() is None
    labels = {"alertname": "InferenceEngineDown", "job": "vllm"}
    assert post(url, {"alerts": [{"status": "firing", "labels": labels}]}) == 200
    assert post(url, {"alerts": [{"status": "resolved", "labels": labels}]}) == 200
    records = sink.notifications(1000.0, "InferenceEngineDown")
    assert [(r["status"], r["received"]) for r in records] == [("firing", 1001.0), ("resolved", 1050.0)]
    assert sink.notifications(1000.0, "TargetDown") == []
    assert len(log.read_text().splitlines()) == 2  # the log keeps the history across restarts
    with pytest.raises(urllib.error.HTTPError) as info:
        post(url, {"nothing": []})
    assert info.value.code == 400


def test_a_sink_that_does_not_answer_is_named() -> None:
    problem = AlertSink("http://127.0.0.1:9", timeout_s=0.5).check()
    assert problem is not None and "does not answer" in problem


class FakeSink:
    """Notifications at given offsets from the fault's start (the `since` the runner asks with)."""

    def __init__(self, offsets: list[tuple[str, float]]) -> None:
        self.offsets = offsets
        self.reads = 0

    def check(self) -> str | None:
        return None

    def notifications(self, since: float, alertname: str) -> list[dict]:
        self.reads += 1
        return [note(status, since + offset, name=alertname) for status, offset in self.offsets]


def alert_doc(**alert) -> dict:
    doc = copy.deepcopy(DOC)
    doc["alert"] = {"fires": "InferenceEngineDown", "labels": {"job": "vllm"}, **alert}
    return doc


def test_the_runner_gates_on_the_alert_and_reports_its_times(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, alert_doc(detect_within_s=3, resolve_within_s=5))[0]
    # The fault lasts 4 s: firing 2 s after it starts, resolved 3 s after its rollback.
    runner.sink = FakeSink([("firing", 2.0), ("resolved", 4 + 3.0)])
    result = runner.run()
    gates = {g.name: g for g in result.gates}
    assert gates["alert_detect_within_s"].measured == pytest.approx(2.0)
    assert gates["alert_resolve_within_s"].measured == pytest.approx(3.0)
    assert result.outcome == "passed"
    assert result.alert["detect_s"] == pytest.approx(2.0)
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "time to detect (fault start to firing) (s) | 2" in summary


def test_the_runner_fails_a_scenario_whose_alert_never_fires(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, alert_doc(resolve_within_s=5))[0]
    runner.sink = FakeSink([])
    result = runner.run()
    assert result.outcome == "failed"
    assert any(g.name == "alert_fires" and not g.passed for g in result.gates)
    assert runner.sink.reads > 1  # it waited for the alert until its deadline


def test_without_a_sink_the_alert_is_not_checked_and_the_report_says_so(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, alert_doc())[0]
    result = runner.run()
    assert not any(g.name.startswith("alert") for g in result.gates)
    assert any("alert InferenceEngineDown not checked: no alert sink" in n for n in result.notes)


def heal_doc(bound: float = 3) -> dict:
    doc = copy.deepcopy(DOC)
    doc["fault"]["params"] = {"signal": "KILL", "restart_policy": "none"}
    doc["expect"] = {"self_heal_within_s": bound}
    return doc


def test_self_heal_is_timed_from_the_kill_to_the_unit_being_active(tmp_path: Path) -> None:
    runner, executor = make_runner(tmp_path, heal_doc(3))[:2]
    executor.data_outputs = ["failed", "activating", "active"]  # polled at 0, 1 and 2 s after the kill
    result = runner.run()
    gate = next(g for g in result.gates if g.name == "self_heal_within_s")
    assert gate.passed and gate.measured == pytest.approx(2.0)
    assert "systemctl show -p ActiveState --value vllm" in " ".join(executor.ran)


def test_a_service_nothing_brings_back_fails_the_self_heal_gate(tmp_path: Path) -> None:
    runner, executor = make_runner(tmp_path, heal_doc(3))[:2]
    executor.data_outputs = ["failed"] * 10
    result = runner.run()
    gate = next(g for g in result.gates if g.name == "self_heal_within_s")
    assert not gate.passed and "not back before the rollback on n1" in gate.detail
    assert result.outcome == "failed"


def test_self_heal_needs_a_kill_and_the_policy_param_is_checked() -> None:
    doc = heal_doc()
    doc["fault"] = {
        "kind": "stop_service",
        "target": {"group": "inference", "service": "vllm"},
        "duration_s": 4,
    }
    with pytest.raises(ScenarioError, match="self_heal_within_s"):
        parse_scenario(doc, "s.yaml")
    doc = heal_doc()
    doc["fault"]["params"]["restart_policy"] = "maybe"
    with pytest.raises(ScenarioError, match="restart_policy"):
        parse_scenario(doc, "s.yaml")


def test_a_kill_without_restart_turns_the_units_restart_off_and_back() -> None:
    from aiswarm_loadtest.chaos.faults import node_commands

    scenario = parse_scenario(heal_doc(), "s.yaml")
    inject, undo = node_commands(scenario.fault, "start_service")
    assert "Restart=no" in inject[0].argv[2] and inject[0].argv[-1] == "/run/systemd/system/vllm.service.d"
    assert "KILL" in inject[1].argv
    assert "rm -f" in undo[0].argv[2] and undo[1].argv == ("systemctl", "start", "vllm")


def test_records_left_in_the_run_directory_by_an_earlier_run_are_not_measured(tmp_path: Path) -> None:
    stale = tmp_path / "run" / "load"
    stale.mkdir(parents=True)
    (stale / "requests.jsonl").write_text('{"stale": true}\n')
    runner = make_runner(tmp_path)[0]
    runner.run()
    assert "stale" not in (stale / "requests.jsonl").read_text()
