"""The inference engines, checked over the lab network with the lab's engine key."""

from __future__ import annotations

import json

import httpx
import pytest


@pytest.fixture(scope="session")
def worker_url(hostvars) -> str:
    return f"http://{hostvars['thanos']['swarm_private_address']}:8081/v1"


def test_the_worker_engine_refuses_a_request_without_the_key(worker_url):
    assert httpx.get(f"{worker_url}/models", timeout=10).status_code == 401


def test_the_worker_engine_streams_a_chat_completion(worker_url, secret):
    headers = {"Authorization": f"Bearer {secret('swarm_engine_api_key')}"}
    body = {"model": "swarm-fallback", "stream": True, "max_tokens": 8,
            "messages": [{"role": "user", "content": "Say hello."}]}  # fmt: skip
    events = []
    with httpx.stream(
        "POST", f"{worker_url}/chat/completions", json=body, headers=headers, timeout=60
    ) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: "):
                events.append(line[len("data: ") :])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert any(chunk["choices"][0]["delta"].get("content") for chunk in chunks)
