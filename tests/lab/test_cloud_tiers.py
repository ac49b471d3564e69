"""The Gemini tier through the gateway against the lab's stand-in (the reference backend in Google's
shape, on the host's lab address): dual-key rotation when the first key's quota is spent, and a
fast 429 naming the tier when both are. Nothing here reaches a real provider."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import pytest

GATEWAY = "http://127.0.0.1:4000/v1"
GROUP = "gemini-flash"


@pytest.fixture(scope="module")
def master_key(secret) -> str:
    return f"sk-{secret('litellm_master_key')}"


@pytest.fixture()
def standin(hostvars):
    """POST a state to the Gemini stand-in's admin endpoint; reset it after the test."""
    lab = hostvars["oracle"]
    url = f"http://{lab['lab_host_address']}:{lab['lab_standins']['gemini']['port']}/_admin/state"

    def state(patch: dict | None = None) -> dict:
        resp = httpx.post(url, json=patch, timeout=10) if patch is not None else httpx.get(url, timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()

    yield state
    state({"reset": True})


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    text: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == 200 and '"error"' not in self.text


def chat(key: str) -> Answer:
    body = {"model": GROUP, "stream": True, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{GATEWAY}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as resp:
        text = resp.read().decode("utf-8", "replace")
    return Answer(resp.status_code, resp.headers, text, time.monotonic() - started)


def test_a_spent_first_key_costs_no_request(master_key, standin):
    """Key 0 answers 429 (quota 0, Retry-After 5 s): every request is served by key 1. Without the
    quota rotation one gemini-flash request in eight failed, since LiteLLM re-picked the spent key."""
    standin({"reset": True, "keys": {"0": {"quota": 0, "window_s": 5}}})
    answers = [chat(master_key) for attempt in range(40)]
    failed = [(a.status, a.text[:200]) for a in answers if not a.ok]
    assert not failed, f"{len(failed)} of 40 failed: {failed[:3]}"
    served_by = {a.headers.get("x-litellm-model-id") for a in answers}
    assert served_by == {f"{GROUP}.gemini.key1"}, served_by
    refused = standin()["keys"][0]["refused"]
    print(f"key 0 refused {refused} request(s); 40 of 40 served by key 1")


def test_every_key_spent_fails_fast_with_the_tier_named_and_lifts_when_the_quota_frees(master_key, standin):
    standin({"reset": True, "keys": {"all": {"quota": 0, "window_s": 3}}})
    answers = [chat(master_key) for attempt in range(4)]
    for answer in answers:
        assert answer.status == 429, (answer.status, answer.text[:300])
        assert answer.seconds < 2, f"a request with every key spent took {answer.seconds:.1f} s"
    last = answers[-1].text
    assert f"every deployment of {GROUP} is over its provider quota" in last, last[:300]
    assert "free again in" in last
    print("with every key spent: " + ", ".join(f"{a.seconds:.2f} s" for a in answers))
    standin({"reset": True})
    time.sleep(3.5)  # the keys rest as long as the stand-in's Retry-After said (3 s)
    answer = chat(master_key)
    assert answer.ok, answer.text[:300]
