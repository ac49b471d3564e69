"""Incremental parser and outcome classifier for OpenAI chat-completions SSE streams.

`SseParser` turns byte chunks, cut anywhere (inside a line, between `\\r` and `\\n`, inside a
UTF-8 sequence), into `SseEvent`s, following the WHATWG server-sent-events rules: lines end
with `\\r\\n`, `\\n` or `\\r`; a line starting with `:` is a comment (keepalive); `data:` lines
of one event are joined with `\\n`; a blank line dispatches the event.

`StreamObserver` timestamps every content chunk of one request and classifies how the
request ended: ok, or one of `records.FAILURE_CLASSES`. Both are pure: the caller supplies
the bytes and the clock readings, so recorded byte fixtures test them without a network.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field
from typing import Literal

from aiswarm_loadtest.records import RequestRecord

EventKind = Literal["chunk", "done", "error", "malformed"]
_EOL = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched server-sent event, interpreted as an OpenAI stream event.

    `chunk`: a `chat.completion.chunk`; `content` holds its delta text (may be empty, e.g. a
    role-only or usage-only chunk). `done`: the `[DONE]` sentinel. `error`: an
    `{"error": ...}` payload or an `event: error`. `malformed`: data that is not JSON of
    the expected shape; `error` says why.
    """

    kind: EventKind
    content: str = ""
    model: str = ""
    completion_tokens: int | None = None
    finish_reason: str | None = None
    error: str = ""


class SseParser:
    """Feed bytes, get the events completed by them."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._line = ""
        self._skip_lf = False  # the previous chunk ended with \r: a leading \n ends no line
        self._data: list[str] = []
        self._event_name = ""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Parse one chunk of the response body; return the events it completed."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if self._skip_lf and text[0] == "\n":
            text = text[1:]
        self._skip_lf = text.endswith("\r")
        events: list[SseEvent] = []
        start = 0
        for end in _EOL.finditer(text):
            self._line += text[start : end.start()]
            start = end.end()
            event = self._take_line()
            if event is not None:
                events.append(event)
        self._line += text[start:]
        return events

    def _take_line(self) -> SseEvent | None:
        line, self._line = self._line, ""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _colon, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_name = value
        return None

    def _dispatch(self) -> SseEvent | None:
        data, event_name = "\n".join(self._data), self._event_name
        had_data = bool(self._data)
        self._data, self._event_name = [], ""
        if not had_data:
            return None
        if event_name == "error":
            return SseEvent("error", error=data[:200])
        return interpret(data)


def interpret(data: str) -> SseEvent:
    """Interpret the data of one event as an OpenAI streaming payload."""
    if data.strip() == "[DONE]":
        return SseEvent("done")
    try:
        payload = json.loads(data)
    except ValueError:
        return SseEvent("malformed", error=f"data is not JSON: {data[:80]!r}")
    if not isinstance(payload, dict):
        return SseEvent("malformed", error=f"data is not a JSON object: {data[:80]!r}")
    if "error" in payload:
        error = payload["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        return SseEvent("error", error=str(message)[:200])
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return SseEvent("malformed", error="chunk has no 'choices' list")
    content, finish = "", None
    for choice in choices:
        if not isinstance(choice, dict):
            return SseEvent("malformed", error="a choice is not an object")
        delta = choice.get("delta") or {}
        piece = delta.get("content") if isinstance(delta, dict) else None
        if piece is not None and not isinstance(piece, str):
            return SseEvent("malformed", error="delta.content is not a string")
        content += piece or ""
        finish = choice.get("finish_reason") or finish
    usage = payload.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return SseEvent(
        "chunk",
        content=content,
        model=str(payload.get("model") or ""),
        completion_tokens=tokens if isinstance(tokens, int) else None,
        finish_reason=finish,
    )


@dataclass(slots=True)
class StreamObserver:
    """Watch one streamed request and turn it into a `RequestRecord`.

    Times are epoch seconds from the caller's clock. A content chunk is an event whose delta
    text is not empty; `chunk_gaps` are the seconds between successive content chunks. A gap
    longer than `stall_threshold_s` after the first token classifies the request as `stall`
    even when the stream completes afterwards.
    """

    t_intended: float
    t_start: float
    stall_threshold_s: float
    parser: SseParser = field(default_factory=SseParser)
    t_first_token: float | None = None
    t_last_chunk: float | None = None
    t_done: float | None = None
    chunk_gaps: list[float] = field(default_factory=list)
    content_chunks: int = 0
    usage_tokens: int | None = None
    model: str = ""
    inband_error: str = ""
    malformed: str = ""
    transport_error: str = ""
    stalled: str = ""

    @property
    def finished(self) -> bool:
        """True once nothing more from the stream can change the outcome."""
        return self.t_done is not None or bool(self.inband_error or self.malformed)

    def feed(self, chunk: bytes, now: float) -> list[SseEvent]:
        """Parse bytes that arrived at `now`; return the events they completed."""
        events = self.parser.feed(chunk)
        for event in events:
            self._observe(event, now)
        return events

    def _observe(self, event: SseEvent, now: float) -> None:
        if self.finished:
            return
        if event.kind == "done":
            self.t_done = now
        elif event.kind == "error":
            self.inband_error = event.error or "error event"
        elif event.kind == "malformed":
            self.malformed = event.error
        else:
            self.model = event.model or self.model
            if event.completion_tokens is not None:
                self.usage_tokens = event.completion_tokens
            if event.content:
                self._content_at(now)

    def _content_at(self, now: float) -> None:
        if self.t_first_token is None:
            self.t_first_token = now
        else:
            assert self.t_last_chunk is not None
            gap = now - self.t_last_chunk
            self.chunk_gaps.append(gap)
            if gap > self.stall_threshold_s and not self.stalled:
                self.stalled = f"{gap:.3f} s between chunks (threshold {self.stall_threshold_s:g} s)"
        self.t_last_chunk = now
        self.content_chunks += 1

    def stall(self, now: float) -> None:
        """The caller gave up waiting for the next chunk at `now`."""
        waited = now - (self.t_last_chunk or self.t_start)
        self.stalled = f"no chunk for {waited:.3f} s (threshold {self.stall_threshold_s:g} s)"

    def transport_failed(self, reason: str) -> None:
        """The connection failed (refused, reset, timed out, HTTP status, parse error)."""
        self.transport_error = reason[:200]

    @property
    def output_tokens(self) -> int:
        """Tokens from the usage event when the server sent one, else one per content chunk."""
        return self.usage_tokens if self.usage_tokens is not None else self.content_chunks

    def classify(self) -> tuple[str | None, str]:
        """Return `(failure_class, reason)`; `(None, "")` means the request succeeded."""
        has_content = self.t_first_token is not None
        if self.malformed:
            return "malformed", self.malformed
        if self.inband_error:
            cls = "inband_error" if has_content else "error_before_first_token"
            return cls, f"error event: {self.inband_error}"
        if not has_content and self.t_done is None:
            return "error_before_first_token", self.transport_error or self.stalled or "no content"
        if self.stalled:
            return "stall", self.stalled
        if self.t_done is None:
            return "cut_without_done", self.transport_error or "stream ended without [DONE]"
        return None, ""

    def record(self, kind: str, t_end: float, status: int, backend: str) -> RequestRecord:
        """The `RequestRecord` for this request, ended at `t_end` (or at `[DONE]`)."""
        failure, reason = self.classify()
        return RequestRecord(
            kind=kind,
            t_intended=self.t_intended,
            t_start=self.t_start,
            t_end=self.t_done if self.t_done is not None and failure is None else t_end,
            ok=failure is None,
            status=status,
            t_first_token=self.t_first_token,
            output_tokens=self.output_tokens,
            failure_class=failure,
            backend=backend,
            model=self.model,
            error=reason,
            chunk_gaps=self.chunk_gaps,
            empty=failure is None and self.t_first_token is None,
        )


def message_content(body: dict) -> bool:
    """True when a non-streaming chat completion's first choice carries text."""
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = first.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return isinstance(content, str) and content != ""
