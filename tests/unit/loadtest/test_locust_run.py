"""Real Locust runs, as subprocesses, against the reference backend: exit codes are the contract.

0: every gate passed; 1: a gate failed; 2: the target was unreachable or rejected the key;
a malformed option fails in the parser with the option's name.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiswarm_loadtest.refbackend import serve_in_process
from aiswarm_loadtest.runlog import load_run

REPO = Path(__file__).resolve().parents[3]
LOCUST = Path(sys.executable).with_name("locust")
KEY = "sk-loadtest"
BACKEND = ["--ttft-ms", "20", "--itl-ms", "5", "--tokens", "16", "--api-key", KEY, "--name", "ref-unit"]

pytestmark = pytest.mark.skipif(
    not LOCUST.exists(), reason=f"locust is not installed next to {sys.executable}"
)


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    with serve_in_process(BACKEND) as url:
        yield url


def _start(locustfile: str, host: str, run_dir: Path, *extra: str, seconds: int = 6) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), AISWARM_API_KEY=KEY)
    command = [
        str(LOCUST), "-f", f"loadtests/{locustfile}", "--headless", "-u", "20", "-r", "20",
        "-t", f"{seconds}s", "--host", host, "--aiswarm-run-dir", str(run_dir), "--only-summary",
        "--max-tokens", "16", *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _stderr = process.communicate(timeout=60)  # stderr goes to stdout
    return process.returncode, output


def test_gates_pass_and_fail(backend: str, tmp_path: Path) -> None:
    generous = _start("chat_stream.py", backend, tmp_path / "pass", "--slo-ttft-p95-ms", "1000")
    strict = _start("chat_stream.py", backend, tmp_path / "fail", "--slo-ttft-p95-ms", "10")
    (code_pass, out_pass), (code_fail, out_fail) = _finish(generous), _finish(strict)

    assert code_pass == 0, out_pass
    assert "ttft p95" in out_pass and "FAIL" not in out_pass
    records = load_run(tmp_path / "pass")
    assert len(records) > 20 and all(r.ok for r in records)
    assert {r.backend for r in records} == {"ref-unit"} and {r.kind for r in records} == {"chat_stream"}
    assert all(r.ttft is not None and r.ttft >= 0.020 for r in records)  # never faster than configured
    assert all(r.output_tokens == 16 for r in records)

    assert code_fail == 1, out_fail
    assert "ttft p95" in out_fail and "FAIL (" in out_fail and "ms over" in out_fail


def test_open_loop_rate_and_other_users(backend: str, tmp_path: Path) -> None:
    rate = _start(
        "chat_rate.py", backend, tmp_path / "rate", "--target-rps", "50", "--slo-min-rps", "40", seconds=4
    )
    users = ("ChatUser", "EmbeddingsUser", "LongContextUser", "SwarmAutoUser")
    others = _start("", backend, tmp_path / "mix", *users, seconds=3)
    (code_rate, out_rate), (code_mix, out_mix) = _finish(rate), _finish(others)
    assert code_rate == 0, out_rate
    assert "request rate" in out_rate
    assert code_mix == 0, out_mix
    kinds = {r.kind for r in load_run(tmp_path / "mix")}
    assert {"chat", "embeddings", "long_context", "auto_simple"} <= kinds, kinds
    auto = {"auto_simple", "auto_batch", "auto_research", "auto_complex", "auto_roleplay"}
    assert kinds <= {"chat", "embeddings", "long_context"} | auto, kinds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_bad_target_and_bad_key_stop_at_once(backend: str, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    unreachable = _start("chat_stream.py", dead, tmp_path / "dead", seconds=30)
    wrong_key = _start("chat_stream.py", backend, tmp_path / "key", "--api-key", "sk-wrong", seconds=30)
    malformed = _start("chat_stream.py", backend, tmp_path / "opt", "--max-tokens", "zero")
    (code_dead, out_dead), (code_key, out_key) = _finish(unreachable), _finish(wrong_key)
    code_opt, out_opt = _finish(malformed)

    assert code_dead == 2, out_dead
    assert f"cannot reach the target {dead}/v1/models" in out_dead
    assert code_key == 2, out_key
    assert "the gateway rejected the API key" in out_key
    assert code_opt != 0 and "argument --max-tokens" in out_opt


def test_a_closed_loop_user_pauses_after_a_failure(tmp_path: Path) -> None:
    # Every chat request fails at once (HTTP 500 before the first token).
    with serve_in_process([*BACKEND, "--fail-rate", "1"]) as failing:
        paused = _start("chat_stream.py", failing, tmp_path / "paused", seconds=3)
        code_paused, out_paused = _finish(paused)
        tight = _start("chat_stream.py", failing, tmp_path / "tight", "--failure-pause-s", "0", seconds=3)
        code_tight, out_tight = _finish(tight)
    assert code_paused == 1 and code_tight == 1, (out_paused, out_tight)  # the error-rate gate fails
    n_paused, n_tight = len(load_run(tmp_path / "paused")), len(load_run(tmp_path / "tight"))
    # 20 users for 3 s pausing 0.1 s after each failure: at most ~20 * (3 / 0.1 + 1) requests.
    assert 0 < n_paused <= 700, out_paused
    assert n_tight > 2 * n_paused, (n_tight, n_paused)
