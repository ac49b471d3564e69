"""The benchmark command's pieces that run without a lab: arguments, the Markdown, the docs update."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

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
                "empty": 3,
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
                        "longest_gap_s": 0.9,
                        "empty_responses": 0,
                        "availability": {
                            "downtime_s": 2.5,
                            "downtime_failed_s": 0.5,
                            "downtime_slow_s": 2.0,
                            "error_budget_burned": 0.001,
                        },
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
    assert "| 11 of 1100 | 3 of 1089 |" in text  # failed, then successes without text
    assert "Failed requests by class: cut_without_done 2, timeout_before_first_token 9." in text
    assert "### rate\n\nCould not run: rate: Locust recorded no requests" in text
    assert (
        "| kill_primary_engine | passed | 0 | 0 of 2635 | 0.12 s | n/a | 0.90 s | 22.40 s | 6.20 s "
        "| 0 | 0 | 2.50 s (0.50 + 2.00) | 0.10% | - |" in text
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


# -- one renderer per step ----------------------------------------------------------------------
def test_render_dispatches_every_step_to_its_own_renderer() -> None:
    assert set(bench.RENDERERS) == set(bench.STEPS + bench.EXTRA_STEPS)
    steps = {k: v for k, v in REPORT["steps"].items() if "error" not in v}
    text = bench.render({"machine": REPORT["machine"], "steps": steps}, "c")
    for name, data in steps.items():
        assert "\n".join(bench.RENDERERS[name](data)).strip() in text


def test_render_overhead_states_the_added_latency_per_user_count() -> None:
    data = {
        "backend": {"ttft_ms": 50, "itl_ms": 10, "tokens": 16},
        "runs": [_run("direct", 1, 18.0, 0.0512), _run("gateway", 1, 15.5, 0.0631, cores=0.25)],
    }
    lines = bench.render_overhead(data)
    assert lines[2:4] == bench.RUN_HEAD
    assert lines[4].startswith("| direct | 1 | 18.0 | 51.2 ms |")
    assert (
        "- 1 stream(s): the gateway adds 11.9 ms at the TTFT median "
        "(15.5 vs 18.0 req/s; the gateway process used 0.25 cores)."
    ) in lines
    assert not any("50 stream(s)" in line for line in lines)  # no 50-user pair, no sentence


def test_render_rate_keeps_warnings_apart_from_gates() -> None:
    data = {
        "users": 4,
        "exit": 0,
        "summary": _summary(99.5, 0.08),
        "gates": ["WARNING: slow", "rps 99 100 PASS"],
    }
    lines = bench.render_rate(data)
    assert lines[0] == "### Open loop: offered rate through the gateway (exit 0)"
    assert lines[-3:] == ["- WARNING: slow", "- gate rps 99 100 PASS", ""]
    assert not any(line.startswith("Failed requests by class") for line in lines)


def test_render_error_names_the_step() -> None:
    assert bench.render_error("calibrate", {"error": "boom"}) == [
        "### calibrate",
        "",
        "Could not run: boom",
        "",
    ]


# -- the bench gateway's pure parts -------------------------------------------------------------
LAB_CONFIG: dict[str, Any] = {
    "model_list": [{"model_name": "swarm-chat", "litellm_params": {"model": "openai/swarm-fallback"}}],
    "router_settings": {
        "num_retries": 2,
        "fallbacks": [{"swarm-chat": ["gemini-flash"]}],
        "model_group_retry_policy": {"swarm-chat": {"DefaultRetries": 0}},
    },
    "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
}

# `systemctl show --property=User --property=Environment --property=EnvironmentFiles
# --property=ExecStart litellm` on a converged gateway (the litellm Molecule scenario's unit).
SYSTEMCTL_SHOW = """\
ExecStart={ path=/opt/aiswarm/venvs/litellm/bin/litellm ; argv[]=/opt/aiswarm/venvs/litellm/bin/litellm \
--config /etc/aiswarm/litellm/config.yaml --host 172.17.0.2 --port 4000 --num_workers 1 ; ignore_errors=no ; \
start_time=[Wed 2026-12-02 14:57:00 UTC] ; stop_time=[n/a] ; pid=5540 ; code=(null) ; status=0/0 }
Environment=LITELLM_LOCAL_MODEL_COST_MAP=True PROMETHEUS_MULTIPROC_DIR=/run/litellm/prometheus \
AISWARM_ROUTER_RULES=/etc/aiswarm/litellm/router.yaml \
AISWARM_ROUTER_DECISIONS_LOG=/var/lib/litellm/router-decisions.jsonl
EnvironmentFiles=/etc/aiswarm/litellm/litellm.env (ignore_errors=no)
User=litellm
"""


def test_bench_gateway_config_serves_only_the_reference_backend() -> None:
    before = yaml.safe_dump(LAB_CONFIG)
    config = bench.bench_gateway_config(LAB_CONFIG, "http://172.30.57.1:38211", "swarm-chat")
    assert config["model_list"] == [
        {
            "model_name": "swarm-chat",
            "litellm_params": {
                "model": "openai/reference",
                "api_base": "http://172.30.57.1:38211/v1",
                "api_key": "none",
                "stream_timeout": 30,
            },
            "model_info": {"id": "bench.reference"},
        }
    ]
    assert config["router_settings"] == {"num_retries": 2}
    assert config["general_settings"] == LAB_CONFIG["general_settings"]
    assert yaml.safe_dump(LAB_CONFIG) == before


def test_bench_gateway_config_without_router_settings() -> None:
    config = bench.bench_gateway_config({"model_list": []}, "http://h:1", "m")
    assert "router_settings" not in config


def test_bench_unit_properties_from_the_recorded_unit() -> None:
    show = bench.parse_systemctl_show(SYSTEMCTL_SHOW)
    assert bench.exec_path(show["ExecStart"]) == "/opt/aiswarm/venvs/litellm/bin/litellm"
    assert bench.bench_unit_properties(show, bench.BENCH_ENV_OVERRIDES) == [
        "User=litellm",
        "CPUAccounting=yes",
        "WorkingDirectory=/run/aiswarm-bench",
        "EnvironmentFile=/etc/aiswarm/litellm/litellm.env",
        "Environment=LITELLM_LOCAL_MODEL_COST_MAP=True",
        "Environment=AISWARM_ROUTER_RULES=/etc/aiswarm/litellm/router.yaml",
        "Environment=PROMETHEUS_MULTIPROC_DIR=/run/aiswarm-bench/prometheus",
        "Environment=AISWARM_ROUTER_DECISIONS_LOG=/run/aiswarm-bench/decisions.jsonl",
    ]


def test_bench_unit_properties_of_a_bare_unit() -> None:
    show = bench.parse_systemctl_show("User=\nEnvironment=\nEnvironmentFiles=\n")
    assert bench.bench_unit_properties(show, {}) == [
        "User=litellm",
        "CPUAccounting=yes",
        "WorkingDirectory=/run/aiswarm-bench",
    ]


def test_exec_path_refuses_a_unit_without_exec_start() -> None:
    with pytest.raises(bench.BenchError, match="no ExecStart path"):
        bench.exec_path("")


CAP_CONFIG: dict[str, Any] = {
    "model_list": [
        {"model_name": "swarm-chat", "litellm_params": {"model": "hosted_vllm/x"}, "model_info": {}}
    ],
    "router_settings": {"num_retries": 2, "fallbacks": [{"swarm-chat": ["x"]}], "redis_host": "127.0.0.1"},
    "litellm_settings": {
        "drop_params": True,
        "request_timeout": 600,
        "cache": True,
        "cache_params": {"type": "redis", "host": "127.0.0.1", "supported_call_types": ["aembedding"]},
        "callbacks": [
            "prometheus",
            "aiswarm.gateway.guard.engine_guard",
            "aiswarm.router.hook.proxy_handler_instance",
            "aiswarm.gateway.limits.request_limits",
        ],
    },
    "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY", "health_check_interval": 300},
}


def test_capacity_variants_add_one_thing_of_ours_at_a_time() -> None:
    variants = {
        v["key"]: v for v in bench.capacity_variants(CAP_CONFIG, "http://10.0.0.1:9000", "swarm-chat")
    }
    assert list(variants) == [
        "bare", "cache", "prometheus", "guard", "router", "limits", "router_settings",
        "ours", "ours_chat_cache", "ours_quiet", "ours_2",
    ]  # fmt: skip
    bare = variants["bare"]["config"]
    assert bare["litellm_settings"] == {"drop_params": True}
    assert "router_settings" not in bare
    assert bare["general_settings"] == {"master_key": "os.environ/LITELLM_MASTER_KEY"}
    assert bare["model_list"][0]["litellm_params"]["api_base"] == "http://10.0.0.1:9000/v1"
    assert variants["cache"]["config"]["litellm_settings"]["cache_params"]["type"] == "redis"
    # The "before" variants cache chat answers; ours keeps the role's call types.
    for key in ("cache", "ours_chat_cache"):
        params = variants[key]["config"]["litellm_settings"]["cache_params"]
        assert params["supported_call_types"] == ["aembedding", "completion", "acompletion"]
    assert variants["ours"]["config"]["litellm_settings"]["cache_params"]["supported_call_types"] == [
        "aembedding"
    ]
    assert (
        variants["ours_chat_cache"]["config"]["litellm_settings"]["callbacks"]
        == (CAP_CONFIG["litellm_settings"]["callbacks"])
    )
    assert variants["cache"]["config"]["router_settings"] == {"redis_host": "127.0.0.1"}
    assert variants["limits"]["config"]["litellm_settings"]["callbacks"] == [
        "aiswarm.gateway.limits.request_limits"
    ]
    assert variants["guard"]["config"]["model_list"][0]["model_info"]["aiswarm_engine"] == "llamacpp"
    assert "aiswarm_engine" not in variants["router"]["config"]["model_list"][0]["model_info"]
    settings = variants["router_settings"]["config"]["router_settings"]
    assert settings == {"num_retries": 2}  # fallbacks name groups the bench gateway lacks; no Redis
    assert (
        variants["ours"]["config"]["litellm_settings"]["callbacks"]
        == CAP_CONFIG["litellm_settings"]["callbacks"]
    )
    assert (variants["ours_2"]["workers"], variants["ours_quiet"]["env"]) == (2, {"LITELLM_LOG": "ERROR"})
    assert CAP_CONFIG["model_list"][0]["model_info"] == {}  # the input is not changed


def _cap(variant: str, users: int, p95: float, cores: float, cpu_ms: float | None, workers: int = 1) -> dict:
    run = _run("gateway", users, 10.0, 0.05, cores=cores)
    run["summary"]["ttft"]["p95"] = p95
    run.update(variant=variant, label=variant, workers=workers, cpu_ms_per_request=cpu_ms)
    return run


def test_the_capacity_law_uses_the_busiest_run_and_the_utilisation_that_kept_the_bound() -> None:
    runs = [
        _cap("direct", 1, 0.051, None, None),
        _cap("direct", 10, 0.052, None, None),
        _cap("direct", 50, 0.055, None, None),
        _cap("ours", 1, 0.058, 0.05, 30.0),
        _cap("ours", 10, 0.060, 0.40, 25.0),  # +8 ms at 40 % of one core: kept
        _cap("ours", 50, 0.900, 0.99, 20.0),  # saturated
        _cap("ours_2", 10, 0.070, 0.90, 22.0, workers=2),  # +18 ms: not kept
    ]
    runs[2]["summary"]["rps"] = 240.0
    law = bench.capacity_law(runs)
    assert law["cpu_ms_per_request"] == 20.0 and law["rps_per_core"] == 50.0 and law["streams"] == 50
    assert law["utilisation"] == pytest.approx(0.40)
    assert law["cores_for_100_rps"] == pytest.approx(100 * 0.020 / 0.40)
    assert law["cores_for_50_streams"] == pytest.approx(240 * 0.020 / 0.40)
    text = "\n".join(
        bench.render_capacity({"backend": {"ttft_ms": 50, "itl_ms": 10, "tokens": 16}, "runs": runs})
    )
    assert "**50 streamed requests a second per core**" in text and "**5.0 cores" in text
    runs[4]["summary"]["ttft"]["p95"] = 0.2
    assert bench.capacity_law(runs)["utilisation"] == pytest.approx(0.05)  # then only 1 stream kept it
    runs[3]["summary"]["ttft"]["p95"] = 0.2
    assert bench.capacity_law(runs)["utilisation"] is None
    assert bench.capacity_law(runs[:3]) is None


def test_top_frames_from_collapsed_stacks() -> None:
    collapsed = "main;loop;parse 30\nmain;loop;send 50\nmain;idle 20\nbroken line\n"
    top = bench.top_frames(collapsed, limit=2)
    assert [t["frame"] for t in top] == ["send", "parse"]
    assert top[0]["self"] == pytest.approx(0.5) and top[1]["inclusive"] == pytest.approx(0.3)
    assert bench.top_frames("") == []
    assert bench.cpu_ms_per_request(2.0, 100) == 20.0 and bench.cpu_ms_per_request(None, 5) is None


def test_component_shares_attribute_each_sample_to_its_innermost_component() -> None:
    collapsed = (
        "run (uvicorn/main.py:1);hook (aiswarm/gateway/limits.py:9);json (json/decoder.py:3) 30\n"
        "run (uvicorn/main.py:1);send (httpx/_client.py:5) 50\n"
        "run (uvicorn/main.py:1) 20\n"
    )
    shares = {c["component"]: c for c in bench.component_shares(collapsed)}
    assert shares["aiswarm request limits"]["self"] == pytest.approx(0.3)
    assert shares["HTTP client to the engine (httpx, aiohttp)"]["self"] == pytest.approx(0.5)
    server = shares["HTTP server (uvicorn, starlette, fastapi)"]
    assert (server["self"], server["inclusive"]) == (pytest.approx(0.2), pytest.approx(1.0))
    assert bench.component_shares("") == []


def _bench_with_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fail: str = "") -> tuple[Any, list]:
    calls: list[list[str]] = []

    def fake_run(argv: Sequence[str], **_kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        if argv[:2] == ["docker", "ps"]:
            out = "aiswarm-lab-oracle\naiswarm-lab-starlord\naiswarm-lab-thanos\nother-container\n"
            return subprocess.CompletedProcess(argv, 0, out, "")
        failed = fail and argv[-1] == fail and argv[1] == "pause"
        return subprocess.CompletedProcess(
            argv, 1 if failed else 0, "", "no such container" if failed else ""
        )

    monkeypatch.setattr(bench, "_run", fake_run)
    args = bench.build_parser().parse_args(["--out", str(tmp_path), "--capacity-quiet"])
    return bench.Bench(args), calls


def test_capacity_quiet_pauses_the_other_lab_nodes_and_always_unpauses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runner, calls = _bench_with_docker(monkeypatch, tmp_path)
    nodes = runner._other_lab_nodes()
    assert nodes == ["aiswarm-lab-starlord", "aiswarm-lab-thanos"]  # not the gateway, not foreign ones
    with pytest.raises(RuntimeError, match="measured"), runner._paused(nodes):
        raise RuntimeError("measured")
    verbs = [c[1:] for c in calls if c[1] in ("pause", "unpause")]
    assert verbs == [["pause", n] for n in nodes] + [["unpause", n] for n in nodes]


def test_a_node_that_cannot_be_paused_stops_the_step_and_unpauses_the_others(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runner, calls = _bench_with_docker(monkeypatch, tmp_path, fail="aiswarm-lab-thanos")
    with (
        pytest.raises(bench.BenchError, match="docker pause aiswarm-lab-thanos"),
        runner._paused(runner._other_lab_nodes()),
    ):
        pytest.fail("the step ran with a node not paused")
    assert [c[1:] for c in calls if c[1] == "unpause"] == [["unpause", "aiswarm-lab-starlord"]]


def test_the_capacity_law_uses_the_bound_given() -> None:
    runs = [
        {**_run("direct", 10, 49.0, 0.052), "variant": "direct"},
        {**_run("gateway", 10, 40.0, 0.070, cores=0.6), "variant": "ours", "workers": 1,
         "cpu_ms_per_request": 18.0, "label": "ours"},
    ]  # fmt: skip
    assert bench.capacity_law(runs, 10.0)["utilisation"] is None
    law = bench.capacity_law(runs, 50.0)
    assert law["utilisation"] == pytest.approx(0.6)
    assert law["cores_for_100_rps"] == pytest.approx(100 * 0.018 / 0.6)
