# SPDX-License-Identifier: GPL-3.0-or-later
"""Whole-module tests for aiswarm.swarm.openai_endpoint against a loopback fake OpenAI server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.aiswarm.swarm.plugins.modules import openai_endpoint
from ansible_collections.aiswarm.swarm.tests.unit.plugins.modules.utils import ExitJson, FailJson

KEY = "sk-gateway-master-secret"


class Server:
    """Minimal OpenAI-compatible server: lists `models`, needs KEY, answers `unavailable` 503s first."""

    def __init__(self) -> None:
        self.models = ["swarm-chat"]
        self.unavailable = 0
        self.paths: list[str] = []
        state = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._serve()

            def _serve(self) -> None:
                state.paths.append(f"{self.command} {self.path}")
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    self._reply(401, {"error": "unauthorized"})
                elif state.unavailable:
                    state.unavailable -= 1
                    self._reply(503, {"error": "starting"})
                elif self.path == "/v1/models":
                    self._reply(200, {"data": [{"id": m} for m in state.models]})
                else:
                    self._reply(200, {"model": "swarm-chat", "choices": [{"message": {"content": "OK"}}]})

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def run(args: dict[str, Any], check: bool = False) -> dict[str, Any]:
    with patch_module_args({**args, "_ansible_check_mode": check}), pytest.raises(ExitJson) as result:
        openai_endpoint.main()
    return result.value.args[0]


def fail(args: dict[str, Any]) -> dict[str, Any]:
    with patch_module_args(args), pytest.raises(FailJson) as result:
        openai_endpoint.main()
    return result.value.args[0]


@pytest.mark.parametrize("check", [False, True], ids=["normal", "check_mode"])
def test_ready_at_once(server: Server, check: bool) -> None:
    result = run({"base_url": server.base_url, "api_key": KEY, "model": "swarm-chat"}, check=check)
    assert result["changed"] is False
    assert result["models"] == ["swarm-chat"]
    assert result["model"] == "swarm-chat"
    assert result["attempts"] == 1
    assert isinstance(result["latency_ms"], float)
    assert server.paths == ["GET /v1/models", "POST /v1/chat/completions"]


def test_ready_after_retries(server: Server) -> None:
    server.unavailable = 2
    result = run(
        {"base_url": server.base_url, "api_key": KEY, "timeout": 10, "delay": 0.01, "probe": "completion"}
    )
    assert result["attempts"] == 3
    assert server.paths[-1] == "POST /v1/completions"


def test_rejected_key(server: Server) -> None:
    result = fail({"base_url": server.base_url, "api_key": "sk-not-it", "timeout": 30, "delay": 0.01})
    assert "the API key was rejected" in result["msg"]
    assert "sk-not-it" not in json.dumps(result)
    assert len(server.paths) == 1


def test_model_missing_lists_found_models(server: Server) -> None:
    server.models = ["tiny-llama"]
    result = fail({"base_url": server.base_url, "api_key": KEY, "model": "swarm-chat", "timeout": 0})
    assert "models found: tiny-llama" in result["msg"]
    assert result["models"] == ["tiny-llama"]


def test_timeout_names_url_and_last_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    result = fail({"base_url": url, "api_key": KEY, "timeout": 0, "delay": 0.01})
    assert result["msg"].startswith(f"{url} not ready after")
    assert f"last error: GET {url}/models failed" in result["msg"]
    assert KEY not in result["msg"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"base_url": "http://127.0.0.1:1/v1", "max_tokens": 5}, "max_tokens must be between 1 and 4"),
        ({"base_url": "127.0.0.1:8000/v1"}, "base_url must start with http"),
        ({"base_url": "http://127.0.0.1:1/v1", "delay": -1}, "must be >= 0"),
        ({"base_url": "http://127.0.0.1:1/v1", "probe": "embeddings"}, "value of probe must be one of"),
    ],
)
def test_bad_arguments(args: dict[str, Any], error: str) -> None:
    assert error in fail(args)["msg"]
