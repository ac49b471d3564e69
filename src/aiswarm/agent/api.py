"""The agent's HTTP API, one small threaded server per listen address.

==========================  =====  ==========================================================
endpoint                    auth   answer
==========================  =====  ==========================================================
GET /metrics                no     Prometheus text format (`aiswarm.agent.metrics`)
GET /health                 no     200 {"status": "ok", ...}; 503 before the first check round
                                   or when the loop stalls
GET /v1/drain               no     {"draining": [{"service", "api_base", "reason", "since"}]}
                                   (the gateway's engine guard reads it)
POST /v1/drain              token  body {"service": NAME, "reason": TEXT}: drain an engine
DELETE /v1/drain/<service>  token  lift the operator's drain (a hot GPU keeps it draining)
==========================  =====  ==========================================================

"token": ``Authorization: Bearer <swarm_agent_token>``; without it, or with another, 401. A
name that is not configured is 404, a service that is not an engine 400. No access log: the
journal keeps the agent's actions, not every scrape.
"""

from __future__ import annotations

import hmac
import json
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from aiswarm.agent.agent import Agent, NotDrainable, UnknownService
from aiswarm.agent.metrics import AgentCollector

MAX_BODY_BYTES = 16 * 1024
DRAIN_PATH = "/v1/drain"


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class Handler(BaseHTTPRequestHandler):
    """Routes the endpoints of the module docstring; `agent`, `registry` and `token` are set per server."""

    server_version = "aiswarm-agent"
    agent: Agent
    registry: CollectorRegistry
    token: bytes

    def log_message(self, format: str, *args: Any) -> None:  # the base class's signature
        """No access log (see the module docstring)."""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._send(HTTPStatus.OK, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif path == "/health":
            status, body = self.agent.health()
            self._json(status, body)
        elif path == DRAIN_PATH:
            self._json(HTTPStatus.OK, {"draining": self.agent.draining()})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: GET {path}"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self._body()
        if body is None or not self._authorised():
            return
        if path != DRAIN_PATH:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: POST {path}"})
            return
        service, reason = body.get("service"), body.get("reason", "")
        if not isinstance(service, str) or not isinstance(reason, str):
            self._json(HTTPStatus.BAD_REQUEST, {"error": 'expected {"service": NAME, "reason": TEXT}'})
            return
        self._drain_call(lambda: self.agent.drain(service, reason), service)

    def do_DELETE(self) -> None:
        path = urlsplit(self.path).path
        if self._body() is None or not self._authorised():
            return
        if not path.startswith(DRAIN_PATH + "/") or len(path) == len(DRAIN_PATH) + 1:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: DELETE {path}"})
            return
        service = unquote(path[len(DRAIN_PATH) + 1 :])
        self._drain_call(lambda: self.agent.undrain(service), service)

    def _drain_call(self, call: Any, service: str) -> None:
        try:
            self._json(HTTPStatus.OK, call())
        except UnknownService:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no service named {service!r} is watched here"})
        except NotDrainable:
            self._json(
                HTTPStatus.BAD_REQUEST, {"error": f"{service!r} is not an engine (no engine_api_base)"}
            )

    def _body(self) -> dict[str, Any] | None:
        """The JSON object sent ({} without a body), read whole before answering; None when refused."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self._json(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"expected a body of at most {MAX_BODY_BYTES} bytes"},
            )
            return None
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "expected a JSON object"})
            return None
        return body

    def _authorised(self) -> bool:
        scheme, _sep, presented = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), self.token):
            return True
        self._json(HTTPStatus.UNAUTHORIZED, {"error": "expected Authorization: Bearer <swarm_agent_token>"},
                   {"WWW-Authenticate": 'Bearer realm="swarm-agent"'})  # fmt: skip
        return False

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body, ensure_ascii=False).encode() + b"\n", "application/json", headers)

    def _send(
        self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class AgentAPI:
    """The servers of one agent: `start` binds every address (an address that cannot be bound
    fails the start), `close` stops them."""

    def __init__(self, agent: Agent) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(AgentCollector(agent))
        handler = type(
            "AgentHandler", (Handler,),
            {"agent": agent, "registry": self.registry, "token": agent.config.token.encode()},
        )  # fmt: skip
        self._handler = handler
        self.servers: list[ThreadingHTTPServer] = []

    def start(self, addresses: tuple[str, ...], port: int) -> None:
        for address in addresses:
            server_class = _Server6 if ":" in address else _Server
            server = server_class((address, port), self._handler)
            self.servers.append(server)
            threading.Thread(
                target=server.serve_forever, args=(0.1,), name=f"agent-api {address}", daemon=True
            ).start()

    @property
    def ports(self) -> list[int]:
        return [server.server_address[1] for server in self.servers]

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
