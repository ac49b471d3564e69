# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of the readiness probe behind aiswarm.swarm.openai_endpoint against a loopback fake server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from ansible_collections.aiswarm.swarm.plugins.module_utils import _openai_endpoint as oe

KEY = "sk-test-very-secret-key"


class FakeOpenAI:
    """Loopback OpenAI-compatible server whose behaviour the test sets.

    models: ids listed by /models; api_key: required bearer token (None: no auth);
    unavailable: how many requests answer 503 before the server becomes ready;
    echo_key_in_errors: 500 bodies repeat the Authorization header (a badly behaved server).
    """

    def __init__(self) -> None:
        self.models = ["swarm-chat"]
        self.api_key: str | None = KEY
        self.unavailable = 0
        self.fail_post_with_500 = False
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((method, self.path, body))
                if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self._reply(401, {"error": {"message": "Invalid API key", "code": 401}})
                elif fake.unavailable > 0:
                    fake.unavailable -= 1
                    self._reply(503, {"error": {"message": "model is loading"}})
                elif method == "GET" and self.path == "/v1/models":
                    self._reply(
                        200, {"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]}
                    )
                elif method == "POST" and fake.fail_post_with_500:
                    self._reply(500, {"error": f"bad header {self.headers.get('Authorization')}"})
                elif method == "POST" and self.path == "/v1/chat/completions":
                    message = {"role": "assistant", "content": "OK"}
                    self._reply(200, {"model": body["model"], "choices": [{"index": 0, "message": message}]})
                elif method == "POST" and self.path == "/v1/completions":
                    self._reply(200, {"model": body["model"], "choices": [{"index": 0, "text": "OK"}]})
                else:
                    self._reply(404, {"error": "not found"})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeClock:
    """Deterministic clock: sleeping advances it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def wait(endpoint: oe.Endpoint, clock: FakeClock, **kwargs: Any) -> oe.ProbeResult:
    return oe.wait_ready(endpoint, clock=clock, sleep=clock.sleep, **kwargs)


def test_ready_at_once_with_chat_probe(fake: FakeOpenAI, clock: FakeClock) -> None:
    result = wait(oe.Endpoint(fake.base_url + "/", KEY), clock, expected="swarm-chat", max_tokens=2)
    assert result.models == ["swarm-chat"]
    assert result.model == "swarm-chat"
    assert result.attempts == 1
    assert result.latency_ms >= 0
    assert clock.sleeps == []
    method, path, body = fake.requests[-1]
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert body is not None
    assert body["max_tokens"] == 2
    assert body["model"] == "swarm-chat"


def test_ready_after_n_tries(fake: FakeOpenAI, clock: FakeClock) -> None:
    fake.unavailable = 3
    result = wait(oe.Endpoint(fake.base_url, KEY), clock, expected="swarm-chat", timeout=60, delay=2)
    assert result.attempts == 4
    assert clock.sleeps == [2, 2, 2]
    assert result.elapsed_s == 6


def test_rejected_key_fails_at_once_without_printing_it(fake: FakeOpenAI, clock: FakeClock) -> None:
    wrong = "sk-wrong-key-1234"
    with pytest.raises(oe.AuthRejected) as err:
        wait(oe.Endpoint(fake.base_url, wrong), clock, timeout=60, delay=1)
    assert "HTTP 401: the API key was rejected" in str(err.value)
    assert wrong not in str(err.value)
    assert KEY not in str(err.value)
    assert len(fake.requests) == 1


def test_missing_key_is_reported_as_rejected(fake: FakeOpenAI, clock: FakeClock) -> None:
    with pytest.raises(oe.AuthRejected, match="no api_key was given"):
        wait(oe.Endpoint(fake.base_url), clock)


def test_model_missing_lists_models_found(fake: FakeOpenAI, clock: FakeClock) -> None:
    fake.models = ["qwen-7b", "tiny-llama"]
    with pytest.raises(oe.ModelMissing) as err:
        wait(oe.Endpoint(fake.base_url, KEY), clock, expected="swarm-chat", timeout=5, delay=2)
    message = str(err.value)
    assert "does not list model 'swarm-chat'; models found: qwen-7b, tiny-llama" in message
    assert "3 attempts" in message
    assert err.value.models == ["qwen-7b", "tiny-llama"]


def test_no_models_listed_is_not_ready(fake: FakeOpenAI, clock: FakeClock) -> None:
    fake.models = []
    with pytest.raises(oe.ModelMissing, match="lists no models yet"):
        wait(oe.Endpoint(fake.base_url, KEY), clock, timeout=0)


def test_timeout_on_refused_connection_names_url_and_last_error(clock: FakeClock) -> None:
    url = closed_port_url()
    with pytest.raises(oe.EndpointError) as err:
        wait(oe.Endpoint(url, KEY), clock, timeout=10, delay=3)
    message = str(err.value)
    assert message.startswith(
        f"{url} not ready after 9.0s (4 attempts, timeout 10s); last error: GET {url}/models"
    )
    assert "refused" in message.lower()
    assert clock.sleeps == [3, 3, 3]


def test_real_timeout_with_real_clock() -> None:
    with pytest.raises(oe.EndpointError, match="not ready after"):
        oe.wait_ready(oe.Endpoint(closed_port_url()), timeout=0.2, delay=0.05)


def test_completion_probe_uses_completions(fake: FakeOpenAI, clock: FakeClock) -> None:
    result = wait(oe.Endpoint(fake.base_url, KEY), clock, probe="completion")
    assert result.model == "swarm-chat"
    method, path, body = fake.requests[-1]
    assert (method, path) == ("POST", "/v1/completions")
    assert body is not None
    assert body["prompt"] == oe.PROMPT
    assert body["max_tokens"] == 1


def test_probe_none_only_lists_models(fake: FakeOpenAI, clock: FakeClock) -> None:
    result = wait(oe.Endpoint(fake.base_url, KEY), clock, probe="none")
    assert result.model == "swarm-chat"
    assert [(method, path) for method, path, _body in fake.requests] == [("GET", "/v1/models")]


def test_server_error_body_is_scrubbed_of_the_key(fake: FakeOpenAI, clock: FakeClock) -> None:
    fake.fail_post_with_500 = True
    with pytest.raises(oe.EndpointError) as err:
        wait(oe.Endpoint(fake.base_url, KEY), clock, timeout=0)
    assert "HTTP 500" in str(err.value)
    assert KEY not in str(err.value)
    assert "***" in str(err.value)


@pytest.mark.parametrize("max_tokens", [0, 5])
def test_max_tokens_range(max_tokens: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 4"):
        oe.wait_ready(oe.Endpoint("http://127.0.0.1:1/v1"), max_tokens=max_tokens)


@pytest.mark.parametrize("base_url", ["127.0.0.1:8000/v1", "ftp://host/v1", ""])
def test_base_url_needs_http_scheme(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url must start with http"):
        oe.Endpoint(base_url)
