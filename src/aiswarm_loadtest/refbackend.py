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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiswarm_loadtest.options import fraction, non_negative_float, positive_int

MAX_HEADER_BYTES = 65536
MAX_BODY_BYTES = 64 * 1024 * 1024
WRITE_BUFFER_LIMIT = 64 * 1024  # wait for the client only when this much is unsent


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
    api_key: str = ""
    seed: int = 0

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

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    500: "Internal Server Error",
}


class ReferenceBackend:
    """The asyncio server; `handle` serves one connection."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
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
        return _Request(parts[0], parts[1].split("?")[0], headers, body)

    async def _route(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        keep = request.keep_alive
        if request.path == "/health":
            return await self._send_json(writer, 200, {"status": "ok"}, keep)
        if self.config.api_key and request.headers.get("authorization") != f"Bearer {self.config.api_key}":
            return await self._send_json(
                writer, 401, _error_body("invalid api key", "authentication_error"), keep
            )
        if request.method == "GET" and request.path == "/v1/models":
            model = {"id": self.config.model, "object": "model", "owned_by": self.config.name}
            return await self._send_json(writer, 200, {"object": "list", "data": [model]}, keep)
        if request.method != "POST" or request.path not in ("/v1/chat/completions", "/v1/embeddings"):
            return await self._send_json(
                writer, 404, _error_body(f"no route {request.path}", "not_found"), keep
            )
        try:
            payload = json.loads(request.body or b"{}")
        except ValueError:
            return await self._send_json(
                writer, 400, _error_body("body is not JSON", "invalid_request"), keep
            )
        if not isinstance(payload, dict):
            return await self._send_json(
                writer, 400, _error_body("body is not an object", "invalid_request"), keep
            )
        start = asyncio.get_running_loop().time()
        if request.path == "/v1/embeddings":
            return await self._embeddings(payload, start, writer, keep)
        return await self._chat(payload, start, writer, keep)

    def _draw_fault(self) -> str:
        c, draw = self.config, self._rng.random()
        for fault, rate in (("fail", c.fail_rate), ("cut", c.cut_rate), ("stall", c.stall_rate)):
            if draw < rate:
                return fault
            draw -= rate
        return "inband" if draw < c.inband_error_rate else ""

    def _output_tokens(self, payload: dict) -> int:
        limit = payload.get("max_tokens") or payload.get("max_completion_tokens")
        return min(self.config.tokens, limit) if isinstance(limit, int) and limit > 0 else self.config.tokens

    async def _chat(self, payload: dict, start: float, writer: asyncio.StreamWriter, keep: bool) -> bool:
        fault, tokens = self._draw_fault(), self._output_tokens(payload)
        self._counter += 1
        ident = f"chatcmpl-ref-{self._counter}"
        first = start + self.config.ttft_ms / 1000
        if fault == "fail":
            await _sleep_until(first)
            return await self._send_json(writer, 500, _error_body("injected failure", "server_error"), keep)
        if not payload.get("stream"):
            await _sleep_until(first + (tokens - 1) * self.config.itl_ms / 1000)
            return await self._send_json(writer, 200, self._completion(ident, tokens), keep)
        writer.write(self._head(200, "text/event-stream", chunked=True, keep=keep))
        middle = _chunk(_event(self._stream_chunk(ident, {"content": "tok "}, None)))  # built once
        for index in range(tokens):
            if fault and index == self.config.fault_after:
                if fault == "cut":
                    return False
                if fault == "inband":
                    writer.write(_chunk(_event(_error_body("injected in-band error", "server_error"))))
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    return keep
                first += self.config.stall_ms / 1000
            await _sleep_until(first + index * self.config.itl_ms / 1000)
            if index == 0:
                writer.write(
                    _chunk(_event(self._stream_chunk(ident, {"role": "assistant", "content": "tok "}, None)))
                )
            elif index == tokens - 1:
                finish = "length" if tokens < self.config.tokens else "stop"
                writer.write(_chunk(_event(self._stream_chunk(ident, {"content": "tok "}, finish))))
            else:
                writer.write(middle)
            if writer.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                await writer.drain()
        options = payload.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage = self._stream_chunk(ident, None, None) | {"usage": _usage(tokens)}
            writer.write(_chunk(_event(usage)))
        writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        return keep

    def _stream_chunk(self, ident: str, delta: dict | None, finish: str | None) -> dict:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.config.model,
            "choices": choices,
        }

    def _completion(self, ident: str, tokens: int) -> dict:
        message = {"role": "assistant", "content": "tok " * tokens}
        finish = "length" if tokens < self.config.tokens else "stop"
        return {
            "id": ident,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.config.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": _usage(tokens),
        }

    async def _embeddings(
        self, payload: dict, start: float, writer: asyncio.StreamWriter, keep: bool
    ) -> bool:
        inputs = payload.get("input", "")
        items = inputs if isinstance(inputs, list) else [inputs]
        await _sleep_until(start + self.config.embed_ms / 1000)
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(str(item), self.config.embed_dim)}
            for i, item in enumerate(items)
        ]
        body = {"object": "list", "data": data, "model": self.config.model, "usage": _usage(0)}
        return await self._send_json(writer, 200, body, keep)

    def _head(self, status: int, content_type: str, *, chunked: bool, keep: bool, length: int = 0) -> bytes:
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            f"content-type: {content_type}",
            f"x-aiswarm-backend: {self.config.name}",
            "connection: keep-alive" if keep else "connection: close",
            "transfer-encoding: chunked" if chunked else f"content-length: {length}",
        ]
        if chunked:
            lines.append("cache-control: no-cache")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send_json(self, writer: asyncio.StreamWriter, status: int, body: dict, keep: bool) -> bool:
        data = json.dumps(body, separators=(",", ":")).encode()
        writer.write(
            self._head(status, "application/json", chunked=False, keep=keep, length=len(data)) + data
        )
        await writer.drain()
        return keep


async def _sleep_until(deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


def _event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


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
    add("--selector", choices=("select", "epoll"), default="select", help="event loop selector")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in ("host", "port", "selector")}
    try:
        config = BackendConfig(**options)
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
