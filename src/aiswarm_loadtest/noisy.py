"""A noisy neighbour: a client that sends malformed and oversized requests to the gateway in a loop.

The cases are data (`CASES`): what a careless or hostile client sends, and the refusal the gateway
owes it (HTTP status and a fragment of the message). The lab suite (``tests/lab/test_bad_input.py``)
sends each once and asserts the answer; the chaos runner starts this module beside the normal load
(``load.noisy_clients`` in a scenario) to show that such a client costs the other users nothing.

    python -m aiswarm_loadtest.noisy --gateway http://127.0.0.1:4000 --duration 60 --out noisy.jsonl

The key comes from the environment (``AISWARM_API_KEY``), never from argv. Each request becomes
one JSON line: ``{"t", "case", "status", "expected", "ok", "elapsed_s"}``; ``ok`` is whether the
gateway answered with the expected status (and message fragment). Only loopback and private
addresses are accepted as targets.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # httpx is imported where requests are sent: the chaos runner reads logs only
    import httpx


MODEL = "swarm-chat"
PATH = "/v1/chat/completions"
JSON = "application/json"


@dataclass(frozen=True)
class Case:
    """One bad request: its body and content type, and what the gateway must answer."""

    name: str
    build: Callable[[], bytes]
    status: int
    says: str = ""  # a fragment the error message must contain (case-insensitive)
    content_type: str = JSON


def _json(obj: object) -> Callable[[], bytes]:
    return lambda: json.dumps(obj).encode()


def _chat(content: object = "hello", **extra: object) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


def _big_prompt(chars: int) -> Callable[[], bytes]:
    return lambda: json.dumps(_chat("lorem ipsum " * (chars // 12))).encode()


CASES: tuple[Case, ...] = (
    Case("invalid_json", lambda: b'{"model": "swarm-chat", "messages": [', 400),
    Case("empty_body", lambda: b"", 400),
    Case("no_messages", _json({"model": MODEL}), 400, "messages must be a non-empty list"),
    Case("unknown_model", _json({**_chat(), "model": "no-such-model"}), 400, "no-such-model"),
    Case("messages_as_string", _json({"model": MODEL, "messages": "hello"}), 400, "messages must be"),
    Case("max_tokens_negative", _json(_chat(max_tokens=-5)), 400, "max_tokens must be a whole number >= 1"),
    Case("max_tokens_huge", _json(_chat(max_tokens=1_000_000_000)), 400, "context window"),
    Case("huge_n", _json(_chat(n=1000)), 400, "n must be a whole number from 1"),
    Case(
        "huge_messages_array",
        _json({"model": MODEL, "messages": [{"role": "user", "content": "hi"}] * 20000}),
        400,
        "accepts at most",
    ),
    Case("oversized_prompt", _big_prompt(3_000_000), 400, "context window"),
    Case("oversized_body", _big_prompt(6_000_000), 413, "accepts at most"),
    Case("binary_body", lambda: bytes(range(256)) * 64, 400),
    Case("content_not_text", _json(_chat({"bytes": "\x00\x01"})), 400, "content must be"),
)
CASE_NAMES = tuple(c.name for c in CASES)


def target_allowed(url: str) -> bool:
    """Only loopback and private (lab) addresses; never a public host."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private


def send(client: httpx.Client, gateway: str, key: str, case: Case) -> tuple[int, str, float]:
    """Send one case; (status, body text, seconds). Status 0 when the connection failed."""
    import httpx  # pylint: disable=import-outside-toplevel,redefined-outer-name

    started = time.monotonic()
    try:
        resp = client.post(
            gateway.rstrip("/") + PATH,
            content=case.build(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": case.content_type},
        )
        return resp.status_code, resp.text, time.monotonic() - started
    except httpx.HTTPError as exc:
        return 0, f"{type(exc).__name__}: {exc}", time.monotonic() - started


def answered_as_expected(case: Case, status: int, text: str) -> bool:
    return status == case.status and case.says.lower() in text.lower()


def run(
    gateway: str,
    key: str,
    duration_s: float,
    out: Path,
    cases: Iterable[Case] = CASES,
    pause_s: float = 0.0,
    timeout_s: float = 30.0,
) -> Counter:
    """Cycle through `cases` for `duration_s` (forever when 0), appending one line per request to `out`."""
    import httpx  # pylint: disable=import-outside-toplevel,redefined-outer-name

    cases = tuple(cases)
    counts: Counter = Counter()
    stop = time.monotonic() + duration_s if duration_s > 0 else float("inf")
    out.parent.mkdir(parents=True, exist_ok=True)
    with httpx.Client(timeout=timeout_s) as client, out.open("a", encoding="utf-8") as log:
        while time.monotonic() < stop:
            for case in cases:
                if time.monotonic() >= stop:
                    break
                status, text, elapsed = send(client, gateway, key, case)
                ok = answered_as_expected(case, status, text)
                counts["ok" if ok else "unexpected"] += 1
                line = {"t": time.time(), "case": case.name, "status": status, "expected": case.status}
                line.update(ok=ok, elapsed_s=round(elapsed, 4))
                log.write(json.dumps(line) + "\n")
                log.flush()
                if pause_s:
                    time.sleep(pause_s)
    return counts


def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def summarise(lines: list[dict]) -> dict:
    """Requests sent, answered as expected, and the unexpected answers by case and status."""
    unexpected = Counter(f"{x['case']}: HTTP {x['status']}" for x in lines if not x["ok"])
    return {
        "requests": len(lines),
        "as_expected": sum(1 for x in lines if x["ok"]),
        "unexpected": dict(unexpected),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aiswarm_loadtest.noisy", description=__doc__.split("\n", maxsplit=1)[0]
    )
    parser.add_argument("--gateway", required=True, help="base URL, e.g. http://127.0.0.1:4000")
    parser.add_argument("--duration", type=float, default=0, help="seconds; 0 runs until SIGTERM")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per request")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between two requests")
    parser.add_argument("--cases", default=",".join(CASE_NAMES), help="comma-separated case names")
    parser.add_argument("--api-key-env", default="AISWARM_API_KEY")
    args = parser.parse_args(argv)
    if not target_allowed(args.gateway):
        parser.error(f"--gateway {args.gateway}: only loopback and private lab addresses are targets")
    names = [n for n in args.cases.split(",") if n]
    unknown = sorted(set(names) - set(CASE_NAMES))
    if unknown:
        parser.error(f"--cases: unknown {unknown}; known: {', '.join(CASE_NAMES)}")
    key = os.environ.get(args.api_key_env, "")
    if not key:
        parser.error(f"the gateway key is read from ${args.api_key_env}, which is empty")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    chosen = [c for c in CASES if c.name in names]
    counts = run(args.gateway, key, args.duration, args.out, chosen, args.pause)
    print(json.dumps(dict(counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
