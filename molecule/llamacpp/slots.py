"""Parallel slots, the token ceiling and abandoned work, measured through llama-server's own API.

Run on the node by verify.yml: `python3 slots.py BASE_URL MODEL MAX_TOKENS` with the key in
LLAMACPP_API_KEY (BASE_URL ends in /v1; /slots and /metrics are beside it). Standard library only.
Each long request runs in a client process of its own, so that it can be killed (SIGKILL) like a
client that went away.

1. A long non-streaming chat request asks for far more tokens than MAX_TOKENS. /slots must show
   its budget (n_decoded + n_remain) at most MAX_TOKENS: the server's ceiling lowered it.
2. While it generates, a short request must be answered, and the long one must still be
   generating afterwards: the two ran at the same time (one lock would have queued the short one).
   Then its client is killed and its slot must be idle within GRACE_S seconds.
3. An abandoned non-streaming request with more work than the server can do before it looks at
   the connection (llama-server checks a waiting client once a second; the tiny model can write
   several thousand tokens in that second): one /v1/completions request with PROMPTS prompts,
   each asking for far more than MAX_TOKENS, so two generate and the rest wait in the queue. Its
   client is killed as soon as it generates. Every slot must be idle within GRACE_S seconds and
   stay idle, nothing may wait in the queue, and the tokens generated for it must stay below
   PROMPTS x MAX_TOKENS: the work stopped, it did not run to its end.

Prints one JSON line with the measurements; exits 1 with a reason when a check fails.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

GRACE_S = 5.0
POLL_S = 0.05
ASK_TOKENS = 1_000_000
PROMPTS = 16
PROMPT = "Tell me a long story."


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

    def post(self, path: str, body: dict, timeout: float) -> dict:
        status, raw = self.call("POST", f"{self.prefix}{path}", body, timeout)
        if status != 200:
            raise CheckFailed(f"POST {path} answered {status}: {raw[:300]!r}")
        return json.loads(raw)

    def chat(self, model: str, max_tokens: int, timeout: float) -> dict:
        messages = [{"role": "user", "content": PROMPT}]
        body = {"model": model, "stream": False, "max_tokens": max_tokens, "messages": messages}
        return self.post("/chat/completions", body, timeout)

    def completions(self, model: str, prompts: list[str], max_tokens: int, timeout: float) -> dict:
        body = {"model": model, "stream": False, "max_tokens": max_tokens, "prompt": prompts}
        return self.post("/completions", body, timeout)

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
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values


def busy(slots: list[dict]) -> list[dict]:
    return [slot for slot in slots if slot.get("is_processing")]


def progress(slot: dict) -> tuple[int, int]:
    """(n_decoded, n_remain) of a processing slot's first sequence."""
    token = (slot.get("next_token") or [{}])[0]
    return int(token.get("n_decoded", 0)), int(token.get("n_remain", -1))


def client(kind: str, base_url: str, model: str) -> int:
    """A long request's own process: asks for far more tokens than the ceiling, waits."""
    api = Api(base_url, os.environ["LLAMACPP_API_KEY"])
    if kind == "chat":
        api.chat(model, ASK_TOKENS, timeout=3600)
    else:
        api.completions(model, [PROMPT] * PROMPTS, ASK_TOKENS, timeout=3600)
    return 0


def start_client(kind: str, base_url: str, model: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--client", kind, base_url, model])


def wait_generating(api: Api, proc: subprocess.Popen, what: str) -> list[dict]:
    """The slots that generate for the client's request, once one has produced a token."""
    start = time.monotonic()
    while True:
        running = [slot for slot in busy(api.slots()) if progress(slot)[0] > 0]
        if running:
            return running
        if proc.poll() is not None:
            raise CheckFailed(f"{what} ended (rc {proc.returncode}) before it was seen generating")
        if time.monotonic() - start > 60:
            raise CheckFailed(f"{what} did not start generating within 60 s")
        time.sleep(POLL_S)


def check_budgets(running: list[dict], max_tokens: int, what: str) -> int:
    budgets = {sum(progress(slot)) for slot in running}
    if not all(0 < budget <= max_tokens for budget in budgets):
        raise CheckFailed(
            f"{what} asked for {ASK_TOKENS} tokens and got budgets {sorted(budgets)}, "
            f"not at most the ceiling {max_tokens}"
        )
    return max(budgets)


def kill_and_wait_idle(api: Api, proc: subprocess.Popen, what: str) -> float:
    """SIGKILL the client, then every slot must be idle within GRACE_S and nothing queued."""
    proc.kill()
    proc.wait()
    killed = time.monotonic()
    while True:
        running = busy(api.slots())
        if not running:
            break
        if time.monotonic() - killed > GRACE_S:
            decoded = [progress(slot)[0] for slot in running]
            raise CheckFailed(
                f"{len(running)} slot(s) still generated {GRACE_S:.0f} s after the client of {what} "
                f"was killed ({decoded} tokens so far)"
            )
        time.sleep(POLL_S)
    idle_s = time.monotonic() - killed
    # A queued task that survived the cancel would start in the next loop of the server.
    time.sleep(1.5)
    running = busy(api.slots())
    deferred = api.metrics()["llamacpp:requests_deferred"]
    if running or deferred:
        raise CheckFailed(
            f"after the client of {what} was killed, its work went on: {len(running)} slot(s) "
            f"generating and {deferred:.0f} task(s) queued 1.5 s after the slots were idle"
        )
    return round(idle_s, 2)


def check(base_url: str, model: str, max_tokens: int) -> dict:
    api = Api(base_url, os.environ["LLAMACPP_API_KEY"])
    facts: dict = {"slots": len(api.slots()), "ceiling": max_tokens}
    start = time.monotonic()
    while busy(api.slots()):
        if time.monotonic() - start > 60:
            raise CheckFailed("a slot was still processing 60 s after the checks began")
        time.sleep(POLL_S)

    # 1 and 2: the long chat request, the ceiling, a short request beside it.
    proc = start_client("chat", base_url, model)
    try:
        running = wait_generating(api, proc, "the long chat request")
        long_slot = running[0]["id"]
        facts["chat_budget"] = check_budgets(running, max_tokens, "the long chat request")
        t0 = time.monotonic()
        short = api.chat(model, 4, timeout=60)
        facts["short_ms"] = round((time.monotonic() - t0) * 1000, 1)
        still = [slot for slot in busy(api.slots()) if slot["id"] == long_slot]
        if not still or proc.poll() is not None:
            raise CheckFailed(
                f"the long request was no longer generating when the short one ({facts['short_ms']} ms) "
                "was answered: nothing shows that they ran at the same time"
            )
        facts["short_tokens"] = short["usage"]["completion_tokens"]
        facts["chat_decoded_when_short_answered"] = progress(still[0])[0]
        facts["chat_idle_after_kill_s"] = kill_and_wait_idle(api, proc, "the long chat request")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # 3: an abandoned request with PROMPTS x MAX_TOKENS of work.
    before = api.metrics()["llamacpp:tokens_predicted_total"]
    proc = start_client("completions", base_url, model)
    try:
        running = wait_generating(api, proc, f"the {PROMPTS}-prompt request")
        facts["abandoned_budget"] = check_budgets(running, max_tokens, f"the {PROMPTS}-prompt request")
        facts["abandoned_idle_after_kill_s"] = kill_and_wait_idle(api, proc, f"the {PROMPTS}-prompt request")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    metrics = api.metrics()
    # Counted when a slot is released, so it holds each task's tokens up to its cancel.
    facts["abandoned_tokens"] = int(metrics["llamacpp:tokens_predicted_total"] - before)
    facts["abandoned_work"] = PROMPTS * facts["abandoned_budget"]
    if metrics["llamacpp:requests_processing"] != 0:
        raise CheckFailed(
            f"/metrics still shows {metrics['llamacpp:requests_processing']:.0f} request(s) processing"
        )
    if facts["abandoned_tokens"] >= facts["abandoned_work"]:
        raise CheckFailed(
            f"the abandoned request produced {facts['abandoned_tokens']} tokens, all of its "
            f"{PROMPTS} x {facts['abandoned_budget']}: it ran to its end instead of stopping when its "
            "client went away"
        )
    return facts


def main() -> int:
    if sys.argv[1] == "--client":
        return client(sys.argv[2], sys.argv[3], sys.argv[4])
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
