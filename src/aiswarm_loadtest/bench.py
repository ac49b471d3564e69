"""The benchmark command: the full load and the whole chaos matrix against the lab.

    make bench                       # brings the lab up, then runs every step below
    python -m aiswarm_loadtest.bench --out loadtests/results/bench --docs docs/benchmarks.md

Steps, in order (`--steps` picks some; each writes its raw output under `--out`):

- `calibrate`: the harness's own error against the calibrated reference backend (50 users);
- `overhead`: the gateway's overhead on time to first token, gateway vs direct to the *same*
  backend: the reference backend runs on this machine on the lab network, and a second LiteLLM
  process runs on the gateway node with the gateway's own configuration, virtualenv and
  secrets, its model list pointed at the reference backend only (`aiswarm-bench-gateway`, a
  transient unit, stopped afterwards). 1 and 50 streams each way; the gateway's CPU use is read
  from its unit's cgroup, which says what limits it;
- `load`: 50 streaming users for `--load-duration` through the lab gateway, gated at the seed's
  limits (first token p95 100 ms, error rate 1%); a failed gate is a figure here, not an abort;
- `chaos`: every scenario in `--scenarios` with the chaos runner, one after another;
- `rate`: the open-loop scenario, `--target-rps` (100) requests per second offered (last: it
  overloads the gateway on purpose);
- `capacity` (not in the default list: about 15 minutes): the gateway's cost one change at a
  time, on the same reference backend as `overhead`. The bench gateway is started once per
  variant (`capacity_variants`: the bare proxy with one model, then each thing our configuration
  adds on its own, then ours with one worker, with quieter logging, and with two workers) and
  loaded with 1, 10 and 50 streams; CPU seconds per completed request give requests per second
  per gateway core, and a `py-spy` profile of ours at 50 streams (`--profile`) names where the
  time goes. The capacity law in docs/benchmarks.md is computed from these figures.

Everything measured goes to `<out>/bench.json` and `<out>/bench.md`; with `--docs`, the Markdown
replaces the section between the `bench:begin` and `bench:end` markers of that file.

Exit codes: 0 when every step ran (whether or not its gates passed), 1 when a step could not
run, 2 when nothing ran because the set-up is wrong (an unknown step, no gateway key in
`--api-key-env`, no `--scenarios`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import functools
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from aiswarm_loadtest.metrics import summarize
from aiswarm_loadtest.options import positive_int
from aiswarm_loadtest.refbackend import serve_in_process
from aiswarm_loadtest.runlog import load_run

# The open-loop step overloads the gateway on purpose (it keeps working through the backlog
# for a while afterwards), so it runs last.
STEPS = ("calibrate", "overhead", "load", "chaos", "rate")
EXTRA_STEPS = ("capacity",)
CAPACITY_STREAMS = (1, 10, 50)
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
BENCH_UNIT = "aiswarm-bench-gateway"
BENCH_DIR = "/run/aiswarm-bench"
# What the bench gateway copies from the lab gateway (the litellm role's _litellm_service and
# _litellm_config_file).
GATEWAY_UNIT = "litellm"
GATEWAY_CONFIG = "/etc/aiswarm/litellm/config.yaml"
# The bench gateway's own files, so the lab gateway's metrics and decisions log stay apart.
BENCH_ENV_OVERRIDES = {
    "PROMETHEUS_MULTIPROC_DIR": f"{BENCH_DIR}/prometheus",
    "AISWARM_ROUTER_DECISIONS_LOG": f"{BENCH_DIR}/decisions.jsonl",
}


class BenchError(RuntimeError):
    """A step could not run (not: its gates failed)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aiswarm_loadtest.bench", description=__doc__.split("\n", maxsplit=1)[0]
    )
    add = parser.add_argument
    add("--out", type=Path, default=None, help="run directory (default loadtests/results/bench-<UTC time>)")
    add("--docs", type=Path, default=None, help="Markdown file whose bench section is replaced")
    add("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    add(
        "--gateway",
        default="",
        help="the gateway (default: port 4000 at the gateway node's lab address, not the published "
        "127.0.0.1 port, whose docker-proxy does not survive the open-loop step's connection count)",
    )
    add("--model", default="swarm-chat", help="model group the load asks for (default %(default)s)")
    add("--max-tokens", type=positive_int, default=16, help="output tokens per request (default 16)")
    add("--api-key-env", default="AISWARM_API_KEY", help="variable holding the gateway key")
    add("--load-duration", type=positive_int, default=60, help="seconds of the 50-user run (default 60)")
    add("--overhead-duration", type=positive_int, default=30, help="seconds per overhead run (default 30)")
    add("--target-rps", type=positive_int, default=100, help="offered rate of the rate step (default 100)")
    add("--capacity-duration", type=positive_int, default=20, help="seconds per capacity run (default 20)")
    add("--capacity-variants", default="", help="comma-separated subset of the capacity variants' keys")
    add("--profile", action="store_true", help="capacity: py-spy profile of ours at 50 streams")
    add(
        "--capacity-bound-ms", type=float, default=10.0,
        help="capacity law: the first-token overhead (TTFT p95 over direct) allowed, in ms (default 10)",
    )  # fmt: skip
    add(
        "--capacity-quiet", action="store_true",
        help="capacity: pause the other lab nodes (docker pause) for the step, so that their engines' idle "
        "work (vLLM's CPU worker keeps part of a core busy) does not share the cores being measured",
    )  # fmt: skip
    add("--scenarios", default="loadtests/scenarios", type=Path, help="scenario file or folder")
    add("--lab-prefix", default="aiswarm-lab-", help="lab container name prefix")
    add("--gateway-host", default="oracle", help="inventory host of the gateway (default oracle)")
    add("--service", action="append", default=["inference_engine=vllm"], help="passed to the chaos runner")
    add(
        "--alert-sink", default=os.environ.get("AISWARM_ALERT_SINK", "http://172.30.57.1:18102"),
        help="the lab's Alertmanager receiver, for the scenarios' alert gates (default: the lab's)",
    )  # fmt: skip
    return parser


def _steps(text: str) -> list[str]:
    steps = [s.strip() for s in text.split(",") if s.strip()]
    known = STEPS + EXTRA_STEPS
    unknown = [s for s in steps if s not in known]
    if unknown or not steps:
        raise BenchError(f"--steps {text!r}: expected a comma-separated subset of {','.join(known)}")
    return [s for s in known if s in steps]  # always in the canonical order


def _run(
    argv: Sequence[str], *, timeout: float = 60, log: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Every command of the bench goes through here: output captured as text, never raises on exit."""
    proc = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if log is not None:
        log.write_text(f"$ {shlex.join(argv)}\n{proc.stdout}\n{proc.stderr}", encoding="utf-8")
    return proc


def gate_lines(output: str) -> list[str]:
    """The rows of the gate table the locustfiles print at the end of a run ("ttft p95 ... FAIL")."""
    rows: list[str] = []
    inside = False
    for line in output.splitlines():
        if line.split()[:3] == ["gate", "measured", "limit"]:
            inside, rows = True, []
        elif inside and (not line.strip() or line.startswith("aiswarm:")):
            inside = False
        elif inside:
            rows.append(" ".join(line.split()))
    return rows


def machine() -> dict[str, Any]:
    """What the figures ran on (no host name)."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text(encoding="utf-8").split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    gpu = "none"
    try:
        proc = _run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"], timeout=20)
        if proc.returncode == 0 and proc.stdout.strip():
            gpu = "; ".join(proc.stdout.strip().splitlines())
    except (OSError, subprocess.TimeoutExpired):
        pass
    commit = _run(["git", "rev-parse", "--short", "HEAD"], timeout=20).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1048576, 1),
        "gpu": gpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# -- the bench gateway's pure parts ----------------------------------------------------------
# What the bench gateway takes over from the lab gateway's unit.
UNIT_PROPERTIES = ("User", "Environment", "EnvironmentFiles", "ExecStart")


def bench_gateway_config(config: dict[str, Any], backend_url: str, model: str) -> dict[str, Any]:
    """The lab gateway's config with one deployment of `model` on the reference backend.

    No fallbacks and no per-group retry policy: they name groups this config no longer has.
    The input is not changed.
    """
    config = copy.deepcopy(config)
    config["model_list"] = [
        {
            "model_name": model,
            "litellm_params": {
                "model": "openai/reference",
                "api_base": f"{backend_url}/v1",
                "api_key": "none",
                "stream_timeout": 30,
            },
            "model_info": {"id": "bench.reference"},
        }
    ]
    router = config.get("router_settings") or {}
    for key in ("fallbacks", "model_group_retry_policy"):
        router.pop(key, None)
    return config


def capacity_variants(config: dict[str, Any], backend_url: str, model: str) -> list[dict[str, Any]]:
    """The configurations the capacity step compares, each {key, label, adds, config, workers, env}.

    `config` is the lab gateway's config.yaml. "ours" is it with its model list on the reference
    backend (the deployment marked for the engine guard, as local engines are); "bare" keeps only
    the model and the master key. Every "+ x" variant is bare plus that one thing of ours.
    """
    ours = bench_gateway_config(config, backend_url, model)
    ours["model_list"][0]["model_info"]["aiswarm_engine"] = "llamacpp"
    settings = ours.get("litellm_settings") or {}
    callbacks = list(settings.get("callbacks") or [])
    bare = {
        "model_list": bench_gateway_config(config, backend_url, model)["model_list"],
        "litellm_settings": {"drop_params": True},
        "general_settings": {"master_key": (ours.get("general_settings") or {}).get("master_key")},
    }

    def plus(**parts: Any) -> dict[str, Any]:
        variant = copy.deepcopy(bare)
        for section, values in parts.items():
            variant.setdefault(section, {}).update(copy.deepcopy(values))
        return variant

    def callback(name: str) -> list[str]:
        return [c for c in callbacks if c == name or c.startswith(f"aiswarm.{name}")]

    variants = [
        ("bare", "bare proxy", "one model, no cache, no callbacks, LiteLLM's router defaults", bare),
    ]
    # Chat answers in the response cache: what the role did before issue 12 (LiteLLM's default
    # call types); the role now caches embeddings and reranks only.
    chat_cache = None
    if settings.get("cache_params"):
        params = copy.deepcopy(settings["cache_params"])
        kinds = params.get("supported_call_types")
        if kinds is not None and "acompletion" not in kinds:
            params["supported_call_types"] = [*kinds, "completion", "acompletion"]
        chat_cache = {"cache": True, "cache_params": params}
        redis = {k: v for k, v in (ours.get("router_settings") or {}).items() if k.startswith("redis_")}
        variants.append(("cache", "+ Redis response cache on chat", "a cache lookup and a store per request",
                         plus(litellm_settings=chat_cache, router_settings=redis)))  # fmt: skip
    for key, label, adds, name in (
        ("prometheus", "+ Prometheus callback", "LiteLLM's metrics on every request", "prometheus"),
        ("guard", "+ engine guard", "a filter before routing, a probe thread", "gateway.guard"),
        ("router", "+ cost router hook", "a pre-call hook (passes swarm-chat through)", "router"),
        ("limits", "+ request limits", "a pre-call hook checking the body", "gateway.limits"),
    ):
        if callback(name):
            variant = plus(litellm_settings={"callbacks": callback(name)})
            if key == "guard":
                variant["model_list"][0]["model_info"]["aiswarm_engine"] = "llamacpp"
            variants.append((key, label, adds, variant))
    router = {k: v for k, v in (ours.get("router_settings") or {}).items() if not k.startswith("redis_")}
    timeout = {"request_timeout": settings["request_timeout"]} if "request_timeout" in settings else {}
    variants.append(("router_settings", "+ our router settings", "retries, cooldowns, timeouts",
                     plus(router_settings=router, litellm_settings=timeout)))  # fmt: skip
    result = [
        {"key": k, "label": label, "adds": adds, "config": c, "workers": 1, "env": {}}
        for k, label, adds, c in variants
    ]
    result += [
        {"key": "ours", "label": "ours", "adds": "everything above", "config": ours, "workers": 1, "env": {}},
        *(
            [{"key": "ours_chat_cache", "label": "ours with chat answers cached (before issue 12)",
              "adds": "the response cache stores chat answers",
              "config": {**ours, "litellm_settings": {**settings, **chat_cache}}, "workers": 1, "env": {}}]
            if chat_cache else []
        ),
        {"key": "ours_quiet", "label": "ours, LITELLM_LOG=ERROR", "adds": "logging at ERROR only",
         "config": ours, "workers": 1, "env": {"LITELLM_LOG": "ERROR"}},
        {"key": "ours_2", "label": "ours, 2 workers", "adds": "a second uvicorn worker",
         "config": ours, "workers": 2, "env": {}},
    ]  # fmt: skip
    return result


def cpu_ms_per_request(cpu_s: float | None, requests: int) -> float | None:
    """Gateway CPU milliseconds per completed request (None without both)."""
    if cpu_s is None or requests <= 0:
        return None
    return cpu_s * 1000.0 / requests


def collapsed_stacks(collapsed: str) -> list[tuple[list[str], int]]:
    """py-spy's collapsed stacks ("a;b;c 12" lines) as (frames, samples); other lines are skipped."""
    stacks = []
    for line in collapsed.splitlines():
        stack, _sep, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def top_frames(collapsed: str, limit: int = 15) -> list[dict[str, Any]]:
    """Self and inclusive sample shares per frame from py-spy's collapsed stacks ("a;b;c 12" lines)."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for frames, n in collapsed_stacks(collapsed):
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
    if not total:
        return []
    ranked = sorted(own, key=lambda f: -own[f])[:limit]
    return [{"frame": f, "self": own[f] / total, "inclusive": inclusive.get(f, 0) / total} for f in ranked]


# Where a gateway sample belongs, by the files on its stack (first match in this order wins for
# the "self" column; "inclusive" counts every component on the stack).
PROFILE_COMPONENTS: dict[str, tuple[str, ...]] = {
    "aiswarm request limits": ("aiswarm/gateway/limits.py",),
    "aiswarm engine guard": ("aiswarm/gateway/guard.py",),
    "aiswarm cost router": ("aiswarm/router/",),
    "LiteLLM Prometheus callback": ("integrations/prometheus",),
    "LiteLLM response cache (Redis)": ("caching/", "redis/"),
    "LiteLLM logging and callbacks": ("litellm_logging.py", "custom_logger.py"),
    "LiteLLM streaming chunk handling": ("streaming_handler.py", "streaming_chunk_builder"),
    "LiteLLM router": ("litellm/router.py", "router_utils/", "router_strategy/"),
    "LiteLLM proxy request path": ("litellm/proxy/",),
    "LiteLLM provider call": ("litellm/llms/", "litellm/main.py"),
    "HTTP client to the engine (httpx, aiohttp)": ("httpx/", "httpcore/", "aiohttp/"),
    "HTTP server (uvicorn, starlette, fastapi)": ("uvicorn/", "starlette/", "fastapi/", "h11/"),
    "pydantic": ("pydantic/", "pydantic_core"),
    "asyncio event loop": ("asyncio/", "uvloop/"),
}


def component_shares(collapsed: str) -> list[dict[str, Any]]:
    """Share of samples per component (PROFILE_COMPONENTS): `inclusive` = on the stack at all,
    `self` = the innermost matching component, so the self column sums to at most 100 %."""
    inclusive: dict[str, int] = dict.fromkeys(PROFILE_COMPONENTS, 0)
    own: dict[str, int] = dict.fromkeys(PROFILE_COMPONENTS, 0)
    total = 0
    for frames, n in collapsed_stacks(collapsed):
        total += n
        stack = ";".join(frames)
        seen = [name for name, marks in PROFILE_COMPONENTS.items() if any(m in stack for m in marks)]
        for name in seen:
            inclusive[name] += n
        for frame in reversed(frames):
            hit = next(
                (name for name, marks in PROFILE_COMPONENTS.items() if any(m in frame for m in marks)), None
            )
            if hit:
                own[hit] += n
                break
    if not total:
        return []
    rows = [
        {"component": name, "self": own[name] / total, "inclusive": inclusive[name] / total}
        for name in PROFILE_COMPONENTS
        if inclusive[name]
    ]
    return sorted(rows, key=lambda r: -r["self"])


def parse_systemctl_show(text: str) -> dict[str, str]:
    """`systemctl show --property=...` output (``Name=value`` lines) as a dict."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def exec_path(exec_start: str) -> str:
    """The program of a unit's ExecStart as `systemctl show` prints it.

    The value reads ``{ path=/opt/x/bin/litellm ; argv[]=/opt/x/bin/litellm --config ... ; ... }``.
    """
    if "path=" not in exec_start:
        raise BenchError(f"{GATEWAY_UNIT}: no ExecStart path in {exec_start!r}")
    return exec_start.split("path=", 1)[1].split(" ;", 1)[0].strip()


def bench_unit_properties(show: dict[str, str], overrides: dict[str, str]) -> list[str]:
    """systemd-run properties of the bench gateway: the lab gateway's account, environment files
    and environment, with `overrides` replacing those variables, CPU accounting on."""
    env = [e for e in show.get("Environment", "").split() if e.split("=", 1)[0] not in overrides]
    env += [f"{k}={v}" for k, v in overrides.items()]
    props = [f"User={show.get('User') or 'litellm'}", "CPUAccounting=yes", f"WorkingDirectory={BENCH_DIR}"]
    props += [f"EnvironmentFile={f}" for f in show.get("EnvironmentFiles", "").split() if f.startswith("/")]
    props += [f"Environment={e}" for e in env]
    return props


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out or Path("loadtests/results") / (
            "bench-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        )
        self.out.mkdir(parents=True, exist_ok=True)
        self.key = os.environ.get(args.api_key_env, "")
        self.python = sys.executable
        self.container = args.lab_prefix + args.gateway_host

    @functools.cached_property
    def gateway(self) -> str:
        return self.args.gateway or f"http://{self._gateway_address()[0]}:4000"

    # -- helpers ----------------------------------------------------------------------------
    def locust_run(
        self, name: str, locustfile: str, host: str, users: int, duration: int, extra: Sequence[str] = ()
    ) -> dict[str, Any]:
        """One headless Locust run; its summary from the raw records, and its exit code."""
        run_dir = self.out / name
        run_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.python, "-m", "locust", "-f", locustfile, "--headless",
            "-u", str(users), "-r", str(min(users, 25)), "-t", f"{duration}s", "--host", host,
            "--only-summary", "--aiswarm-run-dir", str(run_dir),
            "--max-tokens", str(self.args.max_tokens), *extra,
        ]  # fmt: skip
        proc = _run(argv, timeout=duration + 180, log=run_dir / "locust.log")
        records = load_run(run_dir)
        if not records:
            raise BenchError(f"{name}: Locust recorded no requests (exit {proc.returncode}); see {run_dir}")
        summary = asdict(summarize(records))
        gates = gate_lines(proc.stdout + "\n" + proc.stderr)
        return {
            "users": users,
            "duration_s": duration,
            "exit": proc.returncode,
            "summary": summary,
            "gates": gates,
        }

    def docker_run(
        self, *argv: str, stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """`docker exec` on the gateway node, whatever its exit code."""
        if not self.container.startswith(self.args.lab_prefix):
            raise BenchError(f"{self.container}: not a lab container")
        cmd = ["docker", "exec", *(["-i"] if stdin is not None else []), self.container, *argv]
        return _run(cmd, stdin=stdin, timeout=timeout)

    def docker(self, *argv: str, stdin: str | None = None, timeout: float = 60) -> str:
        """`docker exec` on the gateway node; its output, or BenchError when it fails."""
        proc = self.docker_run(*argv, stdin=stdin, timeout=timeout)
        if proc.returncode != 0:
            raise BenchError(
                f"docker exec {self.container} {shlex.join(argv)}: exit {proc.returncode}: "
                f"{proc.stderr.strip()[-400:]}"
            )
        return proc.stdout

    # -- steps ------------------------------------------------------------------------------
    def calibrate(self) -> dict[str, Any]:
        path = self.out / "calibrate.json"
        argv = [self.python, "-m", "aiswarm_loadtest.calibrate", "--users", "50", "--duration", "30",
                "--ttft-ms", "50", "--json", str(path), "--run-dir", str(self.out / "calibrate")]  # fmt: skip
        (self.out / "calibrate").mkdir(exist_ok=True)
        proc = _run(argv, timeout=300, log=self.out / "calibrate.log")
        if not path.exists():
            raise BenchError(f"calibrate: exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
        return json.loads(path.read_text(encoding="utf-8"))

    def _gateway_address(self) -> tuple[str, str]:
        try:
            raw = _run(
                ["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", self.container]
            ).stdout
        except OSError as exc:
            raise BenchError(f"docker: {exc} (the bench runs against the lab: make lab)") from exc
        networks = json.loads(raw or "null") or {}
        for net in networks.values():
            if net.get("IPAddress"):
                return net["IPAddress"], net.get("Gateway") or ""
        raise BenchError(f"{self.container}: no address on a Docker network (is the lab up?)")

    def _start_bench_gateway(
        self,
        backend_url: str,
        address: str,
        port: int,
        config: dict[str, Any] | None = None,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        if config is None:
            config = bench_gateway_config(
                yaml.safe_load(self.docker("cat", GATEWAY_CONFIG)), backend_url, self.args.model
            )
        show = parse_systemctl_show(
            self.docker("systemctl", "show", *(f"--property={p}" for p in UNIT_PROPERTIES), GATEWAY_UNIT)
        )
        user = show.get("User") or "litellm"
        if self._unit_active():
            self.docker("systemctl", "stop", BENCH_UNIT, timeout=60)
        self.docker(
            "install", "-d", "-o", user, "-g", user, "-m", "0750", BENCH_DIR, f"{BENCH_DIR}/prometheus"
        )
        self.docker(
            "sh", "-c", f"cat > {BENCH_DIR}/config.yaml", stdin=yaml.safe_dump(config, sort_keys=False)
        )
        self.docker("chown", user, f"{BENCH_DIR}/config.yaml")
        overrides = {**BENCH_ENV_OVERRIDES, **(env or {})}
        argv = ["systemd-run", f"--unit={BENCH_UNIT}",
                *(f"--property={p}" for p in bench_unit_properties(show, overrides)),
                exec_path(show.get("ExecStart", "")),
                "--config", f"{BENCH_DIR}/config.yaml", "--host", address, "--port", str(port),
                "--num_workers", str(workers)]  # fmt: skip
        self.docker(*argv)
        self._wait_answering(address, port)

    def _wait_answering(self, address: str, port: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = _run(
                ["curl", "-fsS", "-o", "/dev/null", "-H", f"Authorization: Bearer {self.key}",
                 f"http://{address}:{port}/v1/models"],
                timeout=30,
            )  # fmt: skip
            if proc.returncode == 0:
                return
            if not self._unit_active():
                log = self.docker("journalctl", "-u", BENCH_UNIT, "-n", "30", "--no-pager")
                raise BenchError(f"{BENCH_UNIT} exited before it answered:\n{log}")
            time.sleep(2)
        raise BenchError(f"{BENCH_UNIT} did not answer on {address}:{port} within {timeout:.0f} s")

    def _unit_active(self) -> bool:
        return self.docker_run("systemctl", "is-active", "--quiet", BENCH_UNIT).returncode == 0

    def _cpu_s(self) -> float:
        """CPU seconds (user + system) used so far by the bench gateway's main process and children.

        Read from /proc: the lab nodes see cgroup v1 without the cpu controller delegated.
        """
        script = (
            'pid=$(systemctl show -p MainPID --value "$1"); [ "${pid:-0}" -gt 0 ] || { echo 0; exit; }; '
            "for p in $pid $(pgrep -P \"$pid\"); do awk '{print $14 + $15}' /proc/$p/stat 2>/dev/null; done "
            "| awk '{s += $1} END {print s + 0}'"
        )
        ticks = self.docker("sh", "-c", script, "sh", BENCH_UNIT).strip()
        return float(ticks or 0) / os.sysconf("SC_CLK_TCK")

    def _bench_addresses(self, step: str) -> tuple[str, str]:
        """The gateway node's lab address and this machine's (where the reference backend listens)."""
        address, host_side = self._gateway_address()
        if not host_side:
            raise BenchError(f"{step}: cannot tell this machine's address on the lab network")
        return address, host_side

    def _reference_backend_info(self) -> dict[str, Any]:
        """The calibrated reference backend the overhead and capacity steps put behind the gateway."""
        return {"ttft_ms": 50, "itl_ms": 10, "tokens": self.args.max_tokens}

    def _reference_backend(self) -> list[str]:
        b = self._reference_backend_info()
        return ["--ttft-ms", str(b["ttft_ms"]), "--itl-ms", str(b["itl_ms"]), "--tokens", str(b["tokens"]),
                "--selector", "epoll"]  # fmt: skip

    def overhead(self) -> dict[str, Any]:
        address, host_side = self._bench_addresses("overhead")
        port, duration = 4100, self.args.overhead_duration
        backend = self._reference_backend()
        result: dict[str, Any] = {"backend": self._reference_backend_info()}
        with serve_in_process(backend, host=host_side) as url:
            try:
                self._start_bench_gateway(url, address, port)
                runs = []
                for users in (1, 50):
                    for path, host in (("direct", url), ("gateway", f"http://{address}:{port}")):
                        cpu0 = self._cpu_s() if path == "gateway" else 0.0
                        run = self.locust_run(
                            f"overhead-{path}-{users}", "loadtests/chat_stream.py", host, users, duration,
                            ["--model", self.args.model,
                             "--slo-ttft-p95-ms", "60000", "--slo-e2e-p95-ms", "600000"],
                        )  # fmt: skip
                        run["path"] = path
                        run["gateway_cpu_cores"] = (
                            (self._cpu_s() - cpu0) / duration if path == "gateway" else None
                        )
                        runs.append(run)
                result["runs"] = runs
            finally:
                if self._unit_active():
                    self.docker("systemctl", "stop", BENCH_UNIT, timeout=60)
                self.docker("rm", "-rf", BENCH_DIR)
        return result

    def _bench_host_pid(self) -> int | None:
        """This machine's PID of the bench gateway's main process (py-spy attaches from here)."""
        proc = _run(["docker", "top", self.container, "-eo", "pid,args"], timeout=30)
        for line in proc.stdout.splitlines()[1:]:
            pid, _sep, args = line.strip().partition(" ")
            if f"{BENCH_DIR}/config.yaml" in args and "litellm" in args and pid.isdigit():
                return int(pid)
        return None

    def _profile(self, seconds: int) -> dict[str, Any]:
        """py-spy over the bench gateway and its workers while a load runs: collapsed stacks for the
        top frames, then a flame graph of the same load (py-spy writes one format per recording)."""
        pid = self._bench_host_pid()
        if pid is None:
            return {"error": "the bench gateway's process was not found with docker top"}
        svg, raw = self.out / "capacity-profile.svg", self.out / "capacity-profile.txt"
        half = str(max(3, seconds // 2))
        # --gil: only samples of a thread holding the GIL, i.e. where the gateway's Python spends CPU
        # (threads waiting on a lock or a socket would otherwise dominate the picture).
        spy = [str(Path(self.python).parent / "py-spy"), "record", "--pid", str(pid), "--subprocesses",
               "--gil", "--duration", half, "--rate", "200", "--nonblocking"]  # fmt: skip
        _run([*spy, "--format", "raw", "--output", str(raw)], timeout=seconds + 60)
        _run([*spy, "--format", "flamegraph", "--output", str(svg)], timeout=seconds + 60)
        if not raw.exists():
            return {"error": "py-spy wrote no profile (is py-spy installed in the harness venv?)"}
        text = raw.read_text(encoding="utf-8")
        return {
            "collapsed": str(raw),
            "flamegraph": str(svg),
            "samples": sum(n for _frames, n in collapsed_stacks(text)),
            "components": component_shares(text),
            "top": top_frames(text),
        }

    def capacity(self) -> dict[str, Any]:
        address, host_side = self._bench_addresses("capacity")
        port, duration = 4100, self.args.capacity_duration
        backend = self._reference_backend()
        lab_config = yaml.safe_load(self.docker("cat", GATEWAY_CONFIG))
        wanted = {k for k in self.args.capacity_variants.split(",") if k}
        result: dict[str, Any] = {
            "backend": self._reference_backend_info(),
            "streams": list(CAPACITY_STREAMS),
            "bound_ms": self.args.capacity_bound_ms,
            "runs": [],
        }
        load = ["--model", self.args.model, "--slo-ttft-p95-ms", "60000", "--slo-e2e-p95-ms", "600000"]
        paused = self._other_lab_nodes() if self.args.capacity_quiet else []
        result["paused_nodes"] = paused
        with self._paused(paused), serve_in_process(backend, host=host_side) as url:
            for users in CAPACITY_STREAMS:
                run = self.locust_run(f"capacity-direct-{users}", "loadtests/chat_stream.py", url, users,
                                      duration, load)  # fmt: skip
                result["runs"].append({"variant": "direct", "label": "direct (no gateway)", **run})
            variants = capacity_variants(lab_config, url, self.args.model)
            unknown = wanted - {v["key"] for v in variants}
            if unknown:
                raise BenchError(f"--capacity-variants: unknown {sorted(unknown)}")
            try:
                for variant in variants:
                    if wanted and variant["key"] not in wanted:
                        continue
                    print(f"bench: capacity {variant['label']} ...", flush=True)
                    self._start_bench_gateway(
                        url, address, port, variant["config"], variant["workers"], variant["env"]
                    )
                    for users in CAPACITY_STREAMS:
                        cpu0 = self._cpu_s()
                        run = self.locust_run(
                            f"capacity-{variant['key']}-{users}", "loadtests/chat_stream.py",
                            f"http://{address}:{port}", users, duration, load,
                        )  # fmt: skip
                        cpu = self._cpu_s() - cpu0
                        summary = run["summary"]
                        done = summary["requests"] - sum(summary["failures"].values())
                        run.update(
                            variant=variant["key"], label=variant["label"], adds=variant["adds"],
                            workers=variant["workers"], gateway_cpu_s=round(cpu, 2),
                            gateway_cpu_cores=cpu / duration,
                            cpu_ms_per_request=cpu_ms_per_request(cpu, done),
                        )  # fmt: skip
                        result["runs"].append(run)
                    if self.args.profile and variant["key"] == "ours":
                        profiled = self._profiled_load(address, port, load, duration)
                        result["profile"] = profiled
            finally:
                if self._unit_active():
                    self.docker("systemctl", "stop", BENCH_UNIT, timeout=60)
                self.docker("rm", "-rf", BENCH_DIR)
        return result

    def _other_lab_nodes(self) -> list[str]:
        """The running lab containers other than the gateway node's."""
        proc = _run(["docker", "ps", "--format", "{{.Names}}", "--filter", f"name=^{self.args.lab_prefix}"])
        if proc.returncode != 0:
            raise BenchError(f"docker ps: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
        return sorted(
            n for n in proc.stdout.split() if n.startswith(self.args.lab_prefix) and n != self.container
        )

    @contextlib.contextmanager
    def _paused(self, containers: list[str]) -> Iterator[None]:
        """`docker pause` the containers for the block (their processes get no CPU), unpaused after."""
        done: list[str] = []
        try:
            for name in containers:
                proc = _run(["docker", "pause", name])
                if proc.returncode != 0:
                    raise BenchError(f"docker pause {name}: {proc.stderr.strip()[-300:]}")
                done.append(name)
            if done:
                print(f"bench: paused {', '.join(done)} for the capacity step", flush=True)
            yield
        finally:
            for name in done:
                _run(["docker", "unpause", name])

    def _profiled_load(self, address: str, port: int, load: list[str], duration: int) -> dict[str, Any]:
        """50 streams on the bench gateway with py-spy attached for the run's middle."""
        import threading

        box: dict[str, Any] = {}
        spy = threading.Thread(target=lambda: box.update(self._profile(max(6, duration - 5))))
        timer = threading.Timer(3.0, spy.start)
        timer.start()
        self.locust_run("capacity-profiled-50", "loadtests/chat_stream.py", f"http://{address}:{port}", 50,
                        duration, load)  # fmt: skip
        timer.join()
        spy.join(timeout=120)
        return box

    def load(self) -> dict[str, Any]:
        return self.locust_run(
            "load-50", "loadtests/chat_stream.py", self.gateway, 50, self.args.load_duration,
            ["--model", self.args.model],
        )  # fmt: skip

    def rate(self) -> dict[str, Any]:
        users = 4
        return self.locust_run(
            "rate", "loadtests/chat_rate.py", self.gateway, users, self.args.load_duration,
            ["--model", self.args.model, "--target-rps", str(self.args.target_rps), "--max-inflight", "250",
             "--slo-min-rps", str(self.args.target_rps), "--slo-ttft-p95-ms", "100"],
        )  # fmt: skip

    def chaos(self) -> dict[str, Any]:
        source = self.args.scenarios
        files = sorted(source.glob("*.yaml")) if source.is_dir() else [source]
        results = []
        for path in files:
            out = self.out / "chaos" / path.stem
            argv = [
                self.python,
                "-m",
                "aiswarm_loadtest.chaos",
                "run",
                str(path),
                "--executor",
                "docker",
                "--gateway",
                self.gateway,
                "--out",
                str(out),
                "--api-key-env",
                self.args.api_key_env,
                f"--locust-arg=--model={self.args.model}",
                f"--locust-arg=--max-tokens={self.args.max_tokens}",
            ]
            argv += [f"--service={s}" for s in self.args.service]  # fmt: skip
            if self.args.alert_sink:
                argv.append(f"--alert-sink={self.args.alert_sink}")
            print(f"bench: chaos {path.stem} ...", flush=True)
            started = time.monotonic()
            proc = _run(argv, timeout=1800, log=self.out / f"chaos-{path.stem}.log")
            entry: dict[str, Any] = {"scenario": path.stem, "exit": proc.returncode,
                                     "wall_s": round(time.monotonic() - started, 1)}  # fmt: skip
            result_file = out / "result.json"
            if result_file.exists():
                data = json.loads(result_file.read_text(encoding="utf-8"))
                entry.update(
                    {
                        k: data.get(k)
                        for k in ("outcome", "measurements", "gates", "notes", "open_faults", "alert")
                    }
                )
                entry["kind"] = (data.get("faults") or [{}])[0].get("kind")
            else:
                entry["outcome"] = "aborted"
                entry["notes"] = [proc.stderr.strip()[-400:]]
            print(f"bench: chaos {path.stem}: {entry['outcome']} ({entry['wall_s']} s)", flush=True)
            results.append(entry)
        return {"scenarios": results}

    def run(self, steps: list[str]) -> tuple[dict[str, Any], int]:
        report: dict[str, Any] = {"machine": machine(), "steps": {}}
        rc = 0
        for step in steps:
            print(f"bench: {step} ...", flush=True)
            started = time.monotonic()
            try:
                report["steps"][step] = getattr(self, step)()
            except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
                report["steps"][step] = {"error": str(exc)}
                rc = 1
                print(f"bench: {step} could not run: {exc}", file=sys.stderr, flush=True)
            print(f"bench: {step} done in {time.monotonic() - started:.0f} s", flush=True)
            (self.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return report, rc


# -- Markdown ---------------------------------------------------------------------------------
def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _run_row(label: str, run: dict[str, Any]) -> str:
    s = run["summary"]
    failed = s["requests"] - round(s["requests"] * (1 - s["error_rate"]))
    empty = s.get("empty")  # absent from reports written before the content gate
    no_text = "n/a" if empty is None else f"{empty} of {s['requests'] - failed}"
    return (
        f"| {label} | {run['users']} | {s['rps']:.1f} | {_ms(s['ttft']['p50'])} | {_ms(s['ttft']['p95'])} "
        f"| {_ms(s['ttft']['p99'])} | {_ms(s['e2e']['p95'])} | {failed} of {s['requests']} | {no_text} |"
    )


RUN_HEAD = [
    "| run | users | req/s | TTFT p50 | TTFT p95 | TTFT p99 | e2e p95 | failed | no text |",
    "|---|---|---|---|---|---|---|---|---|",
]


def render_machine(m: dict[str, Any], command: str) -> list[str]:
    return [
        f"## Benchmark run of {m['date']} (`{command}`)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, GPU: {m['gpu']}; kernel "
        f"{m['kernel']}, commit {m['commit']}, load average at start {m['load_average']}. The lab's "
        "three nodes, their engines, the gateway and the load generator share these cores.",
        "",
    ]


def render_error(name: str, data: dict[str, Any]) -> list[str]:
    return [f"### {name}", "", f"Could not run: {data['error']}", ""]


def render_calibrate(data: dict[str, Any]) -> list[str]:
    return [
        "### Harness error (reference backend, 50 users, 30 s)",
        "",
        f"Configured TTFT {data['ttft_configured_ms']:g} ms; "
        f"measured p50 {data['ttft_p50_ms']:.2f} ms "
        f"(error **{data['error_ms']:+.2f} ms**, tolerance {data['tolerance_ms']:g} ms: "
        f"{'within' if data['within'] else 'outside'}), p95 {data['ttft_p95_ms']:.2f} ms; ITL "
        f"{data['itl_p50_ms']:.2f} ms against {data['itl_configured_ms']:g}; send lag p95 "
        f"{data['send_lag_p95_ms']:.2f} ms; {data['requests']} requests; load average "
        f"{[round(x, 1) for x in data['load_average']]}.",
        "",
    ]


def _overhead_line(users: int, direct: dict[str, Any] | None, gateway: dict[str, Any] | None) -> list[str]:
    """What the gateway adds at the TTFT median for one user count (nothing without both medians)."""
    if not direct or not gateway:
        return []
    d, g = direct["summary"], gateway["summary"]
    if d["ttft"]["p50"] is None or g["ttft"]["p50"] is None:
        return []
    extra = (g["ttft"]["p50"] - d["ttft"]["p50"]) * 1000
    cores = gateway.get("gateway_cpu_cores")
    cpu = f"; the gateway process used {cores:.2f} cores" if cores is not None else ""
    return [
        f"- {users} stream(s): the gateway adds {extra:.1f} ms at the TTFT median "
        f"({g['rps']:.1f} vs {d['rps']:.1f} req/s{cpu})."
    ]


def render_overhead(data: dict[str, Any]) -> list[str]:
    b = data["backend"]
    lines = [
        "### Gateway overhead, same backend (reference backend: TTFT "
        f"{b['ttft_ms']} ms, ITL {b['itl_ms']} ms, {b['tokens']} tokens)",
        "",
        *RUN_HEAD,
        *(_run_row(r["path"], r) for r in data["runs"]),
        "",
    ]
    by = {(r["path"], r["users"]): r for r in data["runs"]}
    for users in (1, 50):
        lines += _overhead_line(users, by.get(("direct", users)), by.get(("gateway", users)))
    return [*lines, ""]


def _render_run(name: str, title: str, data: dict[str, Any]) -> list[str]:
    lines = [f"### {title} (exit {data['exit']})", "", *RUN_HEAD, _run_row(name, data), ""]
    failures = data["summary"].get("failures") or {}
    if failures:
        classes = ", ".join(f"{k} {v}" for k, v in sorted(failures.items()))
        lines += [f"Failed requests by class: {classes}.", ""]
    lines += [f"- {g}" if g.startswith("WARNING") else f"- gate {g}" for g in data["gates"]]
    return [*lines, ""]


def render_load(data: dict[str, Any]) -> list[str]:
    return _render_run("load", "50 streaming users through the gateway", data)


def render_rate(data: dict[str, Any]) -> list[str]:
    return _render_run("rate", "Open loop: offered rate through the gateway", data)


def _chaos_row(sc: dict[str, Any]) -> str:
    me = sc.get("measurements") or {}
    av = me.get("availability") or {}
    failed_gates = ", ".join(
        f"{g['name']} ({g['detail']})" if g.get("detail") else g["name"]
        for g in sc.get("gates") or []
        if not g.get("passed")
    )
    budget = av.get("error_budget_burned")
    downtime = _s(av.get("downtime_s"))
    if "downtime_slow_s" in av:  # failed + slow, since the slow-answer definition
        downtime += f" ({av['downtime_failed_s']:.2f} + {av['downtime_slow_s']:.2f})"
    return (
        f"| {sc['scenario']} | {sc['outcome']} | {me.get('failed_during_fault', 'n/a')} "
        f"| {me.get('failed_total', 'n/a')} of {me.get('requests_total', 'n/a')} "
        f"| {_s(me.get('failover_s'))} | {_s(me.get('hung_routing_s'))} "
        f"| {_s(me.get('longest_gap_s'))} | {_s(me.get('failback_s'))} "
        f"| {_s(me.get('recovery_s'))} | {me.get('broken_streams', 'n/a')} "
        f"| {me.get('empty_responses', 'n/a')} "
        f"| {downtime} | {'n/a' if budget is None else f'{budget:.2%}'} "
        f"| {_alert_cell(sc.get('alert') or {})} "
        f"| {failed_gates or '-'} |"
    )


def _alert_cell(alert: dict[str, Any]) -> str:
    """The scenario's alert: its name, time to detect and time to resolve at the receiver."""
    if not alert:
        return "-"
    return f"{alert.get('fires')}: {_s(alert.get('detect_s'))} / {_s(alert.get('resolve_s'))}"


def render_chaos(data: dict[str, Any]) -> list[str]:
    lines = [
        "### Chaos matrix",
        "",
        "| scenario | outcome | failed (fault) | failed (run) | failover | hung routing | longest gap "
        "| failback | recovery | broken streams | no text | downtime (failed + slow) | budget burned "
        "| alert: detect / resolve | failed gates |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(_chaos_row(sc) for sc in data["scenarios"]),
        "",
    ]
    for sc in data["scenarios"]:
        if sc["outcome"] not in ("passed", "failed") and sc.get("notes"):
            notes = " ".join("; ".join(sc["notes"]).split())  # one line, whatever the command printed
            lines.append(f"- {sc['scenario']} ({sc['outcome']}): {notes}")
    return [*lines, ""]


def capacity_law(runs: list[dict[str, Any]], bound_ms: float = 10.0) -> dict[str, Any] | None:
    """The gateway's capacity from our configuration's runs (variants "ours" and "ours_2").

    - CPU per streamed request: ours at its busiest run; `rps_per_core` = 1000 / that.
    - The utilisation a core may run at while the first-token overhead (TTFT p95 over direct at
      the same stream count) stays within `bound_ms`: the highest measured per-worker utilisation
      (gateway cores / workers) among our runs that kept the bound; None when none did.
    - Cores for a rate R: R x CPU ms / 1000 / that utilisation.
    """
    direct = {r["users"]: r["summary"]["ttft"]["p95"] for r in runs if r.get("variant") == "direct"}
    ours = [r for r in runs if r.get("variant") in ("ours", "ours_2") and r.get("cpu_ms_per_request")]
    if not ours:
        return None
    busiest = max([r for r in ours if r["variant"] == "ours"] or ours, key=lambda r: r["users"])
    cpu_ms = busiest["cpu_ms_per_request"]
    kept = []
    for r in ours:
        p95, base = r["summary"]["ttft"]["p95"], direct.get(r["users"])
        if p95 is not None and base is not None and (p95 - base) * 1000 <= bound_ms:
            kept.append((r["gateway_cpu_cores"] / r.get("workers", 1), r))
    utilisation, at = max(kept, key=lambda k: k[0]) if kept else (None, None)
    law: dict[str, Any] = {
        "cpu_ms_per_request": cpu_ms,
        "rps_per_core": 1000.0 / cpu_ms,
        "streams": busiest["users"],
        "bound_ms": bound_ms,
        "utilisation": utilisation,
        "utilisation_at": None if at is None else f"{at['label']}, {at['users']} streams",
    }
    if utilisation:
        law["cores_for_100_rps"] = 100.0 * cpu_ms / 1000.0 / utilisation
        fifty = next((r for r in runs if r.get("variant") == "direct" and r["users"] == 50), None)
        if fifty:
            law["cores_for_50_streams"] = fifty["summary"]["rps"] * cpu_ms / 1000.0 / utilisation
    return law


def render_capacity(data: dict[str, Any]) -> list[str]:
    b = data["backend"]
    runs = data["runs"]
    lines = [
        "### Gateway capacity, one change at a time (reference backend: TTFT "
        f"{b['ttft_ms']} ms, ITL {b['itl_ms']} ms, {b['tokens']} tokens)",
        "",
        "| configuration | adds | streams | req/s | TTFT p50 | TTFT p95 | gateway cores | CPU ms / request "
        "| req/s per core | TTFT p95 over direct |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    direct = {r["users"]: r for r in runs if r.get("variant") == "direct"}
    for r in runs:
        s_ = r["summary"]
        base = direct.get(r["users"])
        over = (
            f"+{(s_['ttft']['p95'] - base['summary']['ttft']['p95']) * 1000:.1f} ms"
            if r.get("variant") != "direct" and base and s_["ttft"]["p95"] and base["summary"]["ttft"]["p95"]
            else "-"
        )
        cpu = r.get("cpu_ms_per_request")
        cores = "-" if r.get("gateway_cpu_cores") is None else f"{r['gateway_cpu_cores']:.2f}"
        per_core = "-" if not cpu else f"{1000 / cpu:.0f}"
        lines.append(
            f"| {r['label']} | {r.get('adds', '-')} | {r['users']} | {s_['rps']:.1f} "
            f"| {_ms(s_['ttft']['p50'])} | {_ms(s_['ttft']['p95'])} | {cores} "
            f"| {'-' if cpu is None else f'{cpu:.1f}'} | {per_core} | {over} |"
        )
    lines.append("")
    law = capacity_law(runs, data.get("bound_ms", 10.0))
    if law:
        lines.append(
            f"- Capacity law (ours, at {law['streams']} streams): {law['cpu_ms_per_request']:.1f} ms of "
            f"gateway CPU per {b['tokens']}-token stream: **{law['rps_per_core']:.0f} streamed requests a "
            "second per core** at full use."
        )
        if law["utilisation"]:
            lines.append(
                f"- The first-token overhead stayed within {law['bound_ms']:g} ms p95 up to "
                f"{law['utilisation']:.0%} use of a worker's core ({law['utilisation_at']}): "
                f"**{law['cores_for_100_rps']:.1f} cores for the design's 100 requests a second**"
                + (
                    f", {law['cores_for_50_streams']:.1f} cores for 50 streams at the direct rate"
                    if law.get("cores_for_50_streams")
                    else ""
                )
                + "."
            )
        else:
            lines.append(
                f"- No run of ours kept the first-token overhead within {law['bound_ms']:g} ms p95 on this "
                "machine, so the cores for the bound cannot be derived from it."
            )
        lines.append("")
    profile = data.get("profile") or {}
    if profile.get("components"):
        lines += [
            f"Where ours spends its CPU at 50 streams (py-spy --gil, {profile.get('samples', 0)} samples "
            "of a thread holding the GIL; self: the innermost of these on the stack):",
            "",
            "| component | self | inclusive |",
            "|---|---|---|",
        ]
        lines += [
            f"| {c['component']} | {c['self']:.1%} | {c['inclusive']:.1%} |" for c in profile["components"]
        ]
        lines.append("")
    if profile.get("top"):
        lines += ["The frames with the most samples of their own:", "",
                  "| frame | self | inclusive |", "|---|---|---|"]  # fmt: skip
        lines += [f"| `{t['frame']}` | {t['self']:.1%} | {t['inclusive']:.1%} |" for t in profile["top"]]
        lines.append("")
    return lines


# One renderer per step, each returning its Markdown lines (as Locust's get_*_summary functions).
RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "calibrate": render_calibrate,
    "overhead": render_overhead,
    "load": render_load,
    "chaos": render_chaos,
    "rate": render_rate,
    "capacity": render_capacity,
}


def render(report: dict[str, Any], command: str) -> str:
    lines = render_machine(report["machine"], command)
    for name, data in report["steps"].items():
        lines += render_error(name, data) if "error" in data else RENDERERS[name](data)
    return "\n".join(lines).rstrip() + "\n"


def update_docs(path: Path, section: str) -> None:
    """Replace the text between the bench markers (appended with markers when absent)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{BEGIN}\n{section}{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        steps = _steps(args.steps)
        if "chaos" in steps and not args.scenarios.exists():
            raise BenchError(f"--scenarios {args.scenarios}: no such file or folder")
        if not os.environ.get(args.api_key_env):
            raise BenchError(f"--api-key-env {args.api_key_env}: the variable is not set or empty")
        bench = Bench(args)
        report, rc = bench.run(steps)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    command = "python -m aiswarm_loadtest.bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    section = render(report, command.strip())
    (bench.out / "bench.md").write_text(section, encoding="utf-8")
    if args.docs:
        update_docs(args.docs, section)
        print(f"bench: results written to {args.docs} and {bench.out}")
    print(section)
    return rc


if __name__ == "__main__":
    sys.exit(main())
