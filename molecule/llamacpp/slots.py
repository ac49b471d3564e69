"""Parallel slots, the token ceiling and abandoned work, measured through llama-server's own API.

Run on the node by verify.yml: `python3 slots.py BASE_URL MODEL MAX_TOKENS` with the key in
LLAMACPP_API_KEY (BASE_URL ends in /v1; /slots and /metrics are beside it). Standard library only.

1. A long non-streaming request L asks for far more than MAX_TOKENS. It runs in a client process
   of its own, so that it can be killed like a client that went away. /slots must show its budget
   (n_decoded + n_remain) at most MAX_TOKENS: the server's --n-predict ceiling clamped it.
2. While L is generating, a short request S must be answered, and L must still be generating
   afterwards: the two ran at the same time (one lock, as in llama_cpp.server, would queue S).
3. The L client is killed with SIGKILL. Every slot must be idle within GRACE_S seconds (the server
   looks at a waiting connection once a second), /metrics must show no request processing, and
   L must have produced fewer tokens than its budget: the work stopped, it did not run to its end.

Prints one JSON line with the measurements; exits 1 with a reason when a check fails.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

GRACE_S = 5.0
POLL_S = 0.05
ASK_TOKENS = 1_000_000


class CheckFailed(Exception):
    pass


class Api:
    def __init__(self, base_url: str, key: str) -> None:
        url = urlsplit(base_url)
        self.host, self.port, self.prefix = url.hostname, url.port or 80, url.path.rstrip("/")
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(
        self, method: str, path: str, body: dict | None = None, timeout: float = 30.0
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=self.headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def chat(self, model: str, max_tokens: int, timeout: float) -> dict:
        body = {
            "model": model,
            "stream": False,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Tell me a long story."}],
        }
        status, raw = self.call("POST", f"{self.prefix}/chat/completions", body, timeout)
        if status != 200:
            raise CheckFailed(f"chat completion answered {status}: {raw[:300]!r}")
        return json.loads(raw)

    def slots(self) -> list[dict]:
        status, raw = self.call("GET", "/slots", timeout=10)
        if status != 200:
            raise CheckFailed(f"GET /slots answered {status}: {raw[:300]!r}")
        return json.loads(raw)

    def metrics(self) -> dict[str, float]:
        status, raw = self.call("GET", "/metrics", timeout=10)
        if status != 200:
            raise CheckFailed(f"GET /metrics answered {status}: {raw[:300]!r}")
        values = {}
        for line in raw.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values


def busy(slots: list[dict]) -> list[dict]:
    return [slot for slot in slots if slot.get("is_processing")]


def progress(slot: dict) -> tuple[int, int]:
    """(n_decoded, n_remain) of a processing slot's first sequence."""
    token = (slot.get("next_token") or [{}])[0]
    return int(token.get("n_decoded", 0)), int(token.get("n_remain", -1))


def wait_idle(api: Api, timeout: float) -> float:
    start = time.monotonic()
    while busy(api.slots()):
        if time.monotonic() - start > timeout:
            raise CheckFailed(f"a slot was still processing {timeout:.0f} s later")
        time.sleep(POLL_S)
    return time.monotonic() - start


def client(base_url: str, model: str) -> int:
    """The long request's own process: asks for far more tokens than the ceiling, waits."""
    Api(base_url, os.environ["LLAMACPP_API_KEY"]).chat(model, ASK_TOKENS, timeout=3600)
    return 0


def check(base_url: str, model: str, max_tokens: int) -> dict:
    api = Api(base_url, os.environ["LLAMACPP_API_KEY"])
    facts: dict = {"slots": len(api.slots()), "ceiling": max_tokens}
    wait_idle(api, 60)
    predicted_before = api.metrics()["llamacpp:tokens_predicted_total"]

    # 1. The long request, in a process that can be killed; wait until it generates.
    long_client = subprocess.Popen([sys.executable, __file__, "--client", base_url, model])
    try:
        start = time.monotonic()
        while True:
            running = [s for s in busy(api.slots()) if progress(s)[0] > 0]
            if running:
                break
            if long_client.poll() is not None:
                raise CheckFailed(
                    f"the long request ended (rc {long_client.returncode}) before it was seen generating"
                )
            if time.monotonic() - start > 60:
                raise CheckFailed("the long request did not start generating within 60 s")
            time.sleep(POLL_S)
        long_slot = running[0]["id"]
        decoded, remain = progress(running[0])
        facts["long_budget"] = decoded + remain
        if not 0 < decoded + remain <= max_tokens:
            raise CheckFailed(
                f"the long request asked for {ASK_TOKENS} tokens and got a budget of {decoded + remain}, "
                f"not at most the ceiling {max_tokens}"
            )

        # 2. A short request while the long one generates.
        t0 = time.monotonic()
        short = api.chat(model, 4, timeout=60)
        facts["short_ms"] = round((time.monotonic() - t0) * 1000, 1)
        facts["short_tokens"] = short["usage"]["completion_tokens"]
        still = [s for s in busy(api.slots()) if s["id"] == long_slot]
        if not still or long_client.poll() is not None:
            raise CheckFailed(
                f"the long request was no longer generating when the short one ({facts['short_ms']} ms) "
                "was answered: nothing shows that they ran at the same time"
            )
        decoded, _ = progress(still[0])
        facts["long_decoded_at_kill"] = decoded

        # 3. Kill the long request's client; its slot must be freed.
        long_client.send_signal(signal.SIGKILL)
        long_client.wait()
        killed = time.monotonic()
        last_decoded = decoded
        while True:
            processing = [s for s in busy(api.slots()) if s["id"] == long_slot]
            if not processing:
                break
            last_decoded = progress(processing[0])[0]
            if time.monotonic() - killed > GRACE_S:
                raise CheckFailed(
                    f"the long request's slot was still generating {GRACE_S:.0f} s after its client "
                    f"was killed ({last_decoded} tokens)"
                )
            time.sleep(POLL_S)
        facts["idle_after_kill_s"] = round(time.monotonic() - killed, 2)
        facts["long_decoded_last_seen"] = last_decoded
    finally:
        if long_client.poll() is None:
            long_client.kill()
            long_client.wait()

    metrics = api.metrics()
    facts["requests_processing"] = metrics["llamacpp:requests_processing"]
    # Flushed when a slot is released, so it holds the long request's tokens up to its cancel.
    facts["tokens_predicted"] = int(metrics["llamacpp:tokens_predicted_total"] - predicted_before)
    long_tokens = facts["tokens_predicted"] - facts["short_tokens"]
    if facts["requests_processing"] != 0:
        raise CheckFailed(f"/metrics still shows {facts['requests_processing']} request(s) processing")
    if long_tokens >= facts["long_budget"]:
        raise CheckFailed(
            f"the long request produced {long_tokens} tokens, its whole budget of {facts['long_budget']}: "
            "it ran to its end instead of stopping when its client went away"
        )
    facts["long_tokens"] = long_tokens
    return facts


def main() -> int:
    if sys.argv[1] == "--client":
        return client(sys.argv[2], sys.argv[3])
    base_url, model, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        facts = check(base_url, model, max_tokens)
    except CheckFailed as exc:
        print(json.dumps({"failed": str(exc)}))
        return 1
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
