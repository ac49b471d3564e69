"""Calibrated reference backend: a test instrument, not an inference server.

An OpenAI-compatible HTTP/1.1 server whose timing and failures are set on the command line,
so the load harness can be measured against a known truth: `GET /health`, `GET /v1/models`,
`POST /v1/chat/completions` (streaming and not) and `POST /v1/embeddings`. Every token is
scheduled against the request's own start (`loop.time()` when its body was read), so delays
never accumulate drift. The event loop uses the `select` selector by default because
`epoll_wait` rounds every timeout up to a whole millisecond, which would add about 0.5 ms
to every delay; select waits with microsecond resolution but is limited to about 1000
open connections (`--selector epoll` lifts the limit and accepts the rounding).

Failure modes, drawn per request from a seeded generator: `--fail-rate` (HTTP 500 before the
first token), `--cut-rate` (connection closed after `--fault-after` tokens, no [DONE]),
`--stall-rate` (silence of `--stall-ms` after `--fault-after` tokens), `--inband-error-rate`
(an `{"error": ...}` event after `--fault-after` tokens). With `--api-key`, requests without
that bearer key get 401. Responses carry `x-aiswarm-backend: <name>` and `model`.

    python -m aiswarm_loadtest.refbackend --port 18000 --ttft-ms 50 --itl-ms 10 --tokens 64

**Stand-in cloud providers** (lab only; nothing here ever calls a real provider). The same
server answers in the shapes of the catalog's cloud providers, as LiteLLM 1.108.7 calls them
with a custom `api_base`:

- OpenAI / OpenRouter: `POST <any prefix>/chat/completions` (OpenRouter's provider posts to
  `{api_base}/chat/completions`, e.g. `/api/v1/chat/completions`), key as `Authorization: Bearer`;
- Google Gemini: `POST <any prefix>/models/<model>:generateContent` and
  `:streamGenerateContent?alt=sse` (LiteLLM builds `{api_base}/models/<model>:<method>`), key in
  the `x-goog-api-key` header (or `?key=`); answers are `candidates`/`usageMetadata` bodies and,
  streamed, one SSE event per token with the finish reason and usage on the last one.

Keys come from `--keys-file` (one per line; never on the command line, never echoed): a request
with another key gets 401 (OpenAI shape) or 400 `API_KEY_INVALID` (Gemini shape). `--quota N`
gives every key N requests per sliding `--quota-window-s` window; the next one gets HTTP 429
with `Retry-After` (seconds until the window frees a slot) in the provider's own error shape
(Gemini: `RESOURCE_EXHAUSTED` with a `RetryInfo`). `--outage` answers every provider request
503 (`UNAVAILABLE`). Every provider response says who served it: `x-aiswarm-backend: <name>`,
`x-aiswarm-standin: openai|gemini` and `x-aiswarm-key: <position>` (the key's index in the
file, never its value).

Admin endpoint, for chaos scenarios (no key; the instrument listens on the lab network only):

- `GET /_admin/state`: `{"outage": bool, "keys": [{"position", "sha256", "quota", "window_s",
  "used", "served", "refused"}]}` (`sha256`: the first 12 hex digits of the key's hash);
- `POST /_admin/state` with JSON `{"reset": true, "outage": bool, "keys": {"<position>" or "all":
  {"quota": int or null, "window_s": seconds, "clear": true}}}`: `reset` first restores the
  start-up state, then the other fields apply; a bad field gets 400 naming it. `quota: 0`
  exhausts a key at once, `null` lifts its quota, `clear` forgets the requests it has made.

    python -m aiswarm_loadtest.refbackend --host 172.30.57.1 --port 18100 --keys-file keys.txt \
        --quota 30 --quota-window-s 60 --tokens 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import re
import selectors
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from aiswarm_loadtest.options import fraction, non_negative_float, positive_float, positive_int

MAX_HEADER_BYTES = 65536
MAX_BODY_BYTES = 64 * 1024 * 1024
WRITE_BUFFER_LIMIT = 64 * 1024  # wait for the client only when this much is unsent
ADMIN_PATH = "/_admin/state"
# LiteLLM's gemini provider with a custom api_base: {api_base}/models/{model}:{method}.
_GEMINI_PATH = re.compile(
    r"^(?:/[^:]*)?/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$"
)


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """The reference backend's knobs; times in milliseconds, rates in 0..1."""

    name: str = "refbackend"
    model: str = "ref-model"
    ttft_ms: float = 50.0
    itl_ms: float = 10.0
    tokens: int = 64
    embed_ms: float = 5.0
    embed_dim: int = 16
    fail_rate: float = 0.0
    cut_rate: float = 0.0
    stall_rate: float = 0.0
    inband_error_rate: float = 0.0
    fault_after: int = 4
    stall_ms: float = 30000.0
    api_key: str = field(default="", repr=False)
    seed: int = 0
    keys: tuple[str, ...] = field(default=(), repr=False)  # stand-in keys; position = index
    quota: int | None = None  # requests per key per window; None: no quota
    quota_window_s: float = 60.0
    outage: bool = False

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "itl_ms", "embed_ms", "stall_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected a delay >= 0 ms, got {getattr(self, name)}")
        for name in ("fail_rate", "cut_rate", "stall_rate", "inband_error_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: expected a rate within 0..1, got {getattr(self, name)}")
        if self.fail_rate + self.cut_rate + self.stall_rate + self.inband_error_rate > 1:
            raise ValueError("fail_rate + cut_rate + stall_rate + inband_error_rate: must not exceed 1")
        if self.tokens < 1 or self.embed_dim < 1 or self.fault_after < 0:
            raise ValueError("tokens and embed_dim must be >= 1, fault_after >= 0")
        if self.quota is not None and self.quota < 0:
            raise ValueError(f"quota: expected requests per window >= 0, got {self.quota}")
        if not self.quota_window_s > 0:
            raise ValueError(f"quota_window_s: expected seconds > 0, got {self.quota_window_s}")
        if any(not key or key.strip() != key for key in self.keys):
            raise ValueError("keys: every key must be a non-empty string without surrounding spaces")
        if self.api_key and self.keys:
            raise ValueError("api_key and keys: give one or the other (api_key is the single-key form)")

    @property
    def accepted_keys(self) -> tuple[str, ...]:
        """The keys requests must carry, by position; empty: no authentication."""
        return self.keys or ((self.api_key,) if self.api_key else ())


def key_hash(key: str) -> str:
    """How a key is named where its value must not appear: the first 12 hex digits of its sha256."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class StateError(ValueError):
    """An admin request the stand-in refuses; the message names the field."""


@dataclass
class KeyState:
    """One key's quota and what it has used: a sliding window of request times."""

    quota: int | None
    window_s: float
    used: deque[float] = field(default_factory=deque)
    served: int = 0
    refused: int = 0

    def admit(self, now: float) -> float | None:
        """Count a request; None when admitted, else the seconds until the window frees a slot."""
        while self.used and self.used[0] <= now - self.window_s:
            self.used.popleft()
        if self.quota is not None and len(self.used) >= self.quota:
            self.refused += 1
            return self.used[0] + self.window_s - now if self.used else self.window_s
        self.used.append(now)
        self.served += 1
        return None


class StandinState:
    """Run-time state of the stand-in providers: the outage switch and every key's quota."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        self.outage = self.config.outage
        self.keys = [
            KeyState(self.config.quota, self.config.quota_window_s) for _key in self.config.accepted_keys
        ]

    def position(self, key: str | None) -> int | None:
        """The position of an accepted key, else None."""
        try:
            return self.config.accepted_keys.index(key or "")
        except ValueError:
            return None

    def apply(self, patch: Any) -> None:
        """Apply an admin request (see the module docstring); StateError names a bad field.

        Every field is checked before anything changes, so a refused request changes nothing.
        """
        if not isinstance(patch, Mapping):
            raise StateError(f"body: expected a JSON object, got {type(patch).__name__}")
        unknown = sorted(set(patch) - {"reset", "outage", "keys"})
        if unknown:
            raise StateError(f"unknown fields {unknown}; allowed: keys, outage, reset")
        for name in ("reset", "outage"):
            if name in patch and not isinstance(patch[name], bool):
                raise StateError(f"{name}: expected true or false, got {patch[name]!r}")
        changes = self._key_changes(patch.get("keys", {}))
        if patch.get("reset"):
            self.reset()
        if "outage" in patch:
            self.outage = patch["outage"]
        for index, change in changes:
            state = self.keys[index]
            if change.get("clear"):
                state.used.clear()
            if "quota" in change:
                state.quota = change["quota"]
            if "window_s" in change:
                state.window_s = float(change["window_s"])

    def _key_changes(self, raw: Any) -> list[tuple[int, Mapping[str, Any]]]:
        if not isinstance(raw, Mapping):
            raise StateError(f'keys: expected {{"<position>" or "all": {{...}}}}, got {raw!r}')
        changes = []
        for name, change in raw.items():
            where = f"keys.{name}"
            if name == "all":
                indices = list(range(len(self.keys)))
            elif isinstance(name, str) and name.isdigit() and int(name) < len(self.keys):
                indices = [int(name)]
            else:
                raise StateError(f"{where}: expected a key position 0..{len(self.keys) - 1} or all")
            if not isinstance(change, Mapping) or set(change) - {"quota", "window_s", "clear"}:
                raise StateError(
                    f"{where}: expected an object with quota, window_s and/or clear, got {change!r}"
                )
            quota = change.get("quota")
            if quota is not None and (isinstance(quota, bool) or not isinstance(quota, int) or quota < 0):
                raise StateError(f"{where}.quota: expected requests per window >= 0 or null, got {quota!r}")
            window = change.get("window_s", 1)
            if isinstance(window, bool) or not isinstance(window, int | float) or not window > 0:
                raise StateError(f"{where}.window_s: expected seconds > 0, got {window!r}")
            if not isinstance(change.get("clear", False), bool):
                raise StateError(f"{where}.clear: expected true or false, got {change['clear']!r}")
            changes.extend((index, change) for index in indices)
        return changes

    def to_dict(self, now: float) -> dict[str, Any]:
        keys = []
        for position, (key, state) in enumerate(zip(self.config.accepted_keys, self.keys, strict=True)):
            used = sum(1 for t in state.used if t > now - state.window_s)
            keys.append({"position": position, "sha256": key_hash(key), "quota": state.quota,
                         "window_s": state.window_s, "used": used, "served": state.served,
                         "refused": state.refused})  # fmt: skip
        return {"outage": self.outage, "keys": keys}


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: str = ""

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
# Google's status names for the HTTP codes the Gemini stand-in sends (google.rpc.Code).
_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                  503: "UNAVAILABLE"}  # fmt: skip


class _OpenAIShape:
    """Bodies and events of an OpenAI-compatible chat completion (vLLM, llama.cpp, OpenRouter)."""

    standin = "openai"

    def __init__(self, model: str, ident: str, full_tokens: int) -> None:
        self.model, self.ident, self.full_tokens = model, ident, full_tokens

    def chunk(self, delta: dict | None, finish: str | None) -> dict:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return {"id": self.ident, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": self.model, "choices": choices}  # fmt: skip

    def first(self, tokens: int) -> bytes:
        return _chunk(_event(self.chunk({"role": "assistant", "content": "tok "}, None)))

    def middle(self) -> bytes:
        return _chunk(_event(self.chunk({"content": "tok "}, None)))

    def last(self, tokens: int) -> bytes:
        finish = "length" if tokens < self.full_tokens else "stop"
        return _chunk(_event(self.chunk({"content": "tok "}, finish)))

    def end(self, payload: dict, tokens: int) -> bytes:
        options = payload.get("stream_options")
        tail = b""
        if isinstance(options, dict) and options.get("include_usage"):
            tail = _chunk(_event(self.chunk(None, None) | {"usage": _usage(tokens)}))
        return tail + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"

    def completion(self, tokens: int) -> dict:
        message = {"role": "assistant", "content": "tok " * tokens}
        finish = "length" if tokens < self.full_tokens else "stop"
        return {"id": self.ident, "object": "chat.completion", "created": int(time.time()),
                "model": self.model, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": _usage(tokens)}  # fmt: skip

    @staticmethod
    def error(status: int, message: str, kind: str) -> dict:
        return {"error": {"message": message, "type": kind, "code": status}}


class _GeminiShape:
    """Bodies and SSE events of Gemini's generateContent / streamGenerateContent?alt=sse."""

    standin = "gemini"

    def __init__(self, model: str, ident: str, full_tokens: int) -> None:
        self.model, self.ident, self.full_tokens = model, ident, full_tokens

    def body(self, text: str, finish: str | None, tokens: int | None) -> dict:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        body: dict[str, Any] = {
            "candidates": [candidate],
            "modelVersion": self.model,
            "responseId": self.ident,
        }
        if tokens is not None:
            body["usageMetadata"] = {"promptTokenCount": 8, "candidatesTokenCount": tokens,
                                     "totalTokenCount": 8 + tokens}  # fmt: skip
        return body

    def first(self, tokens: int) -> bytes:
        return self.last(tokens) if tokens == 1 else self.middle()

    def middle(self) -> bytes:
        return _chunk(_event(self.body("tok ", None, None), b"\r\n\r\n"))

    def last(self, tokens: int) -> bytes:
        finish = "MAX_TOKENS" if tokens < self.full_tokens else "STOP"
        return _chunk(_event(self.body("tok ", finish, tokens), b"\r\n\r\n"))

    def end(self, payload: dict, tokens: int) -> bytes:
        return b"0\r\n\r\n"  # Gemini's stream has no [DONE]: it ends with the body

    def completion(self, tokens: int) -> dict:
        return self.body("tok " * tokens, "MAX_TOKENS" if tokens < self.full_tokens else "STOP", tokens)

    @staticmethod
    def error(status: int, message: str, kind: str) -> dict:
        return {
            "error": {"code": status, "message": message, "status": _GOOGLE_STATUS.get(status, "UNKNOWN")}
        }


class ReferenceBackend:
    """The asyncio server; `handle` serves one connection."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.state = StandinState(config)
        self._rng = random.Random(config.seed)
        self._counter = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    request = await self._read_request(reader)
                except _BadRequest as exc:
                    await self._send_json(writer, exc.status, _error_body(str(exc), "invalid_request"), False)
                    return
                if request is None:
                    return
                keep = await self._route(request, writer)
                if not keep or not request.keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                await writer.wait_closed()  # cancelled at shutdown: end quietly

    async def _read_request(self, reader: asyncio.StreamReader) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as exc:
            raise _BadRequest(400, "request headers too large") from exc
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise _BadRequest(400, f"bad request line {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _colon, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise _BadRequest(400, "chunked request bodies are not supported; send Content-Length")
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY_BYTES:
            raise _BadRequest(400, "request body too large")
        body = await reader.readexactly(length) if length else b""
        path, _mark, query = parts[1].partition("?")
        return _Request(parts[0], path, headers, body, query)

    async def _route(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        keep = request.keep_alive
        if request.path == "/health":
            return await self._send_json(writer, 200, {"status": "ok"}, keep)
        if request.path == ADMIN_PATH:
            return await self._admin(request, writer, keep)
        gemini = _GEMINI_PATH.match(request.path) if request.method == "POST" else None
        if gemini:
            query = parse_qs(request.query)
            key = request.headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
            stream = gemini["method"] == "streamGenerateContent"
            if stream and query.get("alt") != ["sse"]:
                body = _GeminiShape.error(400, "this stand-in streams only with ?alt=sse", "")
                return await self._send_json(writer, 400, body, keep)
            shape: _OpenAIShape | _GeminiShape = _GeminiShape(gemini["model"], "", self.config.tokens)
        else:
            bearer = request.headers.get("authorization", "")
            key, stream = bearer.removeprefix("Bearer "), None
            shape = _OpenAIShape(self.config.model, "", self.config.tokens)
        position, refusal = self._admit(shape, key)
        extra = (
            () if position is None else (f"x-aiswarm-standin: {shape.standin}", f"x-aiswarm-key: {position}")
        )
        if refusal is not None:
            status, body, headers = refusal
            return await self._send_json(writer, status, body, keep, (*extra, *headers))
        if gemini:
            payload = await self._payload(request, writer, keep, shape, extra)
            if payload is None:
                return keep
            return await self._chat(shape, payload, bool(stream), writer, keep, extra)
        if request.method == "GET" and request.path.endswith("/models"):
            model = {"id": self.config.model, "object": "model", "owned_by": self.config.name}
            return await self._send_json(writer, 200, {"object": "list", "data": [model]}, keep, extra)
        chat = request.path.endswith("/chat/completions")
        if request.method != "POST" or not (chat or request.path == "/v1/embeddings"):
            return await self._send_json(
                writer, 404, _error_body(f"no route {request.path}", "not_found"), keep, extra
            )
        payload = await self._payload(request, writer, keep, shape, extra)
        if payload is None:
            return keep
        if not chat:
            return await self._embeddings(payload, asyncio.get_running_loop().time(), writer, keep, extra)
        return await self._chat(shape, payload, bool(payload.get("stream")), writer, keep, extra)

    def _admit(
        self, shape: _OpenAIShape | _GeminiShape, key: str
    ) -> tuple[int | None, tuple[int, dict, tuple[str, ...]] | None]:
        """The key's position and, when the request is refused, (status, body, headers)."""
        gemini = shape.standin == "gemini"
        if self.state.outage:
            return None, (
                503,
                shape.error(503, "stand-in outage: the provider is unavailable", "server_error"),
                (),
            )
        if not self.config.accepted_keys:
            return None, None
        position = self.state.position(key)
        if position is None:
            if gemini:
                body = shape.error(400, "API key not valid. Please pass a valid API key.", "")
                body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                             "reason": "API_KEY_INVALID"}]  # fmt: skip
                return None, (400, body, ())
            return None, (401, shape.error(401, "invalid api key", "authentication_error"), ())
        wait = self.state.keys[position].admit(time.monotonic())
        if wait is None:
            return position, None
        retry = max(1, math.ceil(wait))
        body = shape.error(429, f"quota of key {position} exceeded; retry in {retry} s", "rate_limit_error")
        if gemini:
            body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                         "retryDelay": f"{retry}s"}]  # fmt: skip
        return position, (429, body, (f"retry-after: {retry}",))

    async def _payload(
        self,
        request: _Request,
        writer: asyncio.StreamWriter,
        keep: bool,
        shape: _OpenAIShape | _GeminiShape,
        extra: tuple[str, ...],
    ) -> dict | None:
        """The request's JSON object, or None after answering 400."""
        try:
            payload = json.loads(request.body or b"{}")
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            return payload
        message = "body is not JSON" if payload is None else "body is not an object"
        await self._send_json(writer, 400, shape.error(400, message, "invalid_request"), keep, extra)
        return None

    async def _admin(self, request: _Request, writer: asyncio.StreamWriter, keep: bool) -> bool:
        if request.method == "POST":
            try:
                self.state.apply(json.loads(request.body or b"{}"))
            except ValueError as exc:  # StateError, or a body that is not JSON
                return await self._send_json(writer, 400, _error_body(str(exc), "invalid_request"), keep)
        elif request.method != "GET":
            return await self._send_json(writer, 404, _error_body("GET or POST only", "not_found"), keep)
        return await self._send_json(writer, 200, self.state.to_dict(time.monotonic()), keep)

    def _draw_fault(self) -> str:
        c, draw = self.config, self._rng.random()
        for fault, rate in (("fail", c.fail_rate), ("cut", c.cut_rate), ("stall", c.stall_rate)):
            if draw < rate:
                return fault
            draw -= rate
        return "inband" if draw < c.inband_error_rate else ""

    def _output_tokens(self, payload: dict) -> int:
        limit = payload.get("max_tokens") or payload.get("max_completion_tokens")
        generation = payload.get("generationConfig")
        if limit is None and isinstance(generation, dict):
            # Google's JSON takes either spelling; LiteLLM 1.108.7 sends max_output_tokens.
            limit = generation.get("maxOutputTokens", generation.get("max_output_tokens"))
        return min(self.config.tokens, limit) if isinstance(limit, int) and limit > 0 else self.config.tokens

    async def _chat(
        self,
        shape: _OpenAIShape | _GeminiShape,
        payload: dict,
        stream: bool,
        writer: asyncio.StreamWriter,
        keep: bool,
        extra: tuple[str, ...] = (),
    ) -> bool:
        start = asyncio.get_running_loop().time()
        fault, tokens = self._draw_fault(), self._output_tokens(payload)
        self._counter += 1
        shape.ident = f"chatcmpl-ref-{self._counter}"
        first = start + self.config.ttft_ms / 1000
        if fault == "fail":
            await _sleep_until(first)
            return await self._send_json(
                writer, 500, shape.error(500, "injected failure", "server_error"), keep, extra
            )
        if not stream:
            await _sleep_until(first + (tokens - 1) * self.config.itl_ms / 1000)
            return await self._send_json(writer, 200, shape.completion(tokens), keep, extra)
        writer.write(self._head(200, "text/event-stream", chunked=True, keep=keep, extra=extra))
        middle = shape.middle()  # built once
        for index in range(tokens):
            if fault and index == self.config.fault_after:
                if fault == "cut":
                    return False
                if fault == "inband":
                    writer.write(_chunk(_event(shape.error(500, "injected in-band error", "server_error"))))
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    return keep
                first += self.config.stall_ms / 1000
            await _sleep_until(first + index * self.config.itl_ms / 1000)
            if index == 0:
                writer.write(shape.first(tokens))
            elif index == tokens - 1:
                writer.write(shape.last(tokens))
            else:
                writer.write(middle)
            if writer.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                await writer.drain()
        writer.write(shape.end(payload, tokens))
        await writer.drain()
        return keep

    async def _embeddings(
        self, payload: dict, start: float, writer: asyncio.StreamWriter, keep: bool, extra: tuple[str, ...]
    ) -> bool:
        inputs = payload.get("input", "")
        items = inputs if isinstance(inputs, list) else [inputs]
        await _sleep_until(start + self.config.embed_ms / 1000)
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(str(item), self.config.embed_dim)}
            for i, item in enumerate(items)
        ]
        body = {"object": "list", "data": data, "model": self.config.model, "usage": _usage(0)}
        return await self._send_json(writer, 200, body, keep, extra)

    def _head(
        self,
        status: int,
        content_type: str,
        *,
        chunked: bool,
        keep: bool,
        length: int = 0,
        extra: tuple[str, ...] = (),
    ) -> bytes:
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            f"content-type: {content_type}",
            f"x-aiswarm-backend: {self.config.name}",
            *extra,
            "connection: keep-alive" if keep else "connection: close",
            "transfer-encoding: chunked" if chunked else f"content-length: {length}",
        ]
        if chunked:
            lines.append("cache-control: no-cache")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send_json(
        self, writer: asyncio.StreamWriter, status: int, body: dict, keep: bool, extra: tuple[str, ...] = ()
    ) -> bool:
        data = json.dumps(body, separators=(",", ":")).encode()
        head = self._head(status, "application/json", chunked=False, keep=keep, length=len(data), extra=extra)
        writer.write(head + data)
        await writer.drain()
        return keep


async def _sleep_until(deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


def _event(payload: dict, end: bytes = b"\n\n") -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + end


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _usage(tokens: int) -> dict:
    return {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}


def _error_body(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind}}


def _vector(text: str, dim: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255, 6) for i in range(dim)]


async def _cancel_others() -> None:
    """Cancel the connections still being served, so the loop closes cleanly."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def new_loop(selector: str = "select") -> asyncio.AbstractEventLoop:
    """An event loop on the chosen selector (see the module docstring for why select)."""
    if selector == "select":
        return asyncio.SelectorEventLoop(selectors.SelectSelector())
    return asyncio.SelectorEventLoop(selectors.EpollSelector())


async def start(config: BackendConfig, host: str, port: int) -> asyncio.Server:
    """Start listening; port 0 picks a free port (read it from the server's sockets)."""
    backend = ReferenceBackend(config)
    return await asyncio.start_server(backend.handle, host, port, backlog=1024, reuse_address=True)


@contextlib.contextmanager
def serve_in_thread(
    config: BackendConfig, host: str = "127.0.0.1", selector: str = "select"
) -> Iterator[str]:
    """Run the backend in a background thread; yields its base URL, stops on exit."""
    loop = new_loop(selector)
    ready = threading.Event()
    box: dict[str, asyncio.Server] = {}

    async def main() -> None:
        box["server"] = await start(config, host, 0)
        ready.set()
        async with box["server"]:
            with contextlib.suppress(asyncio.CancelledError):
                await box["server"].serve_forever()
        await _cancel_others()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("reference backend did not start within 10 s")
    port = box["server"].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(box["server"].close)
        thread.join(10)
        loop.close()


@contextlib.contextmanager
def serve_in_process(args: list[str], host: str = "127.0.0.1") -> Iterator[str]:
    """Run the backend as a separate process (its own core and GIL); yields its base URL.

    `args` are command-line options such as ["--ttft-ms", "50"]; the port is chosen free.
    """
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "aiswarm_loadtest.refbackend", "--host", host, "--port", "0", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on " not in line:
            _out, err = process.communicate(timeout=10)
            raise RuntimeError(f"reference backend did not start: {line}{err}".strip())
        yield line.strip().rsplit(" ", 1)[1]
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aiswarm_loadtest.refbackend",
        description="Calibrated reference backend: a TEST INSTRUMENT that imitates an OpenAI-compatible "
        "server with configured first-token delay, inter-token delay, output length and failures, "
        "to measure the load harness itself. It is not an inference server.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add("--port", type=int, default=18000, help="port to bind, 0 picks a free one (default 18000)")
    add("--name", default="refbackend", help="value of the x-aiswarm-backend response header")
    add("--model", default="ref-model", help="the model field of responses")
    add("--ttft-ms", type=non_negative_float, default=50.0, help="first-token delay (default 50)")
    add("--itl-ms", type=non_negative_float, default=10.0, help="delay between tokens (default 10)")
    add("--tokens", type=positive_int, default=64, help="output tokens, capped by max_tokens (default 64)")
    add("--embed-ms", type=non_negative_float, default=5.0, help="embeddings delay (default 5)")
    add("--embed-dim", type=positive_int, default=16, help="embedding dimensions (default 16)")
    add("--fail-rate", type=fraction, default=0.0, help="share of requests answered HTTP 500")
    add("--cut-rate", type=fraction, default=0.0, help="share of streams closed without [DONE]")
    add("--stall-rate", type=fraction, default=0.0, help="share of streams that go silent")
    add("--inband-error-rate", type=fraction, default=0.0, help="share of streams ending in an error event")
    add("--fault-after", type=int, default=4, help="tokens sent before a cut, stall or in-band error")
    add("--stall-ms", type=non_negative_float, default=30000.0, help="length of a stall (default 30000)")
    add("--api-key", default="", help="require 'Authorization: Bearer <key>' (default: no auth)")
    add("--seed", type=int, default=0, help="seed of the failure draws")
    add("--keys-file", type=Path, help="stand-in keys, one per line; a key's position is its line (from 0)")
    add("--quota", type=non_negative_int, help="requests each key may make per window (default: no quota)")
    add("--quota-window-s", type=positive_float, default=60.0, help="the quota's sliding window (default 60)")
    add("--outage", action="store_true", help="start with every provider request answered 503")
    add("--selector", choices=("select", "epoll"), default="select", help="event loop selector")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in ("host", "port", "selector", "keys_file")}
    try:
        if args.keys_file is not None:
            lines = args.keys_file.read_text(encoding="utf-8").splitlines()
            options["keys"] = tuple(line.strip() for line in lines if line.strip())
            if not options["keys"]:
                raise ValueError(f"--keys-file {args.keys_file}: no key in the file")
        config = BackendConfig(**options)
    except OSError as exc:
        parser.error(f"--keys-file {args.keys_file}: {exc.strerror}")
    except ValueError as exc:
        parser.error(str(exc))

    async def serve() -> None:
        server = await start(config, args.host, args.port)
        host, port = server.sockets[0].getsockname()[:2]
        print(f"reference backend listening on http://{host}:{port}", flush=True)
        async with server:
            await server.serve_forever()

    loop = new_loop(args.selector)
    try:
        loop.run_until_complete(serve())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"reference backend: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
