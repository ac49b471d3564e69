"""The shared Locust user: auth, prompts, streaming, attribution, records and custom metrics.

Locustfiles in loadtests/ subclass `OpenAIUser` and only choose what to send. Importing this
module registers the harness's command-line options (see `options`) and resolves the run
directory at `init`; it does no network I/O.

Custom Locust entries, fired per successful request so they show in the UI, CSV and HTML:
request type `ttft`, `itl`, `tpot`, `e2e` (milliseconds) and `tokens/s` (the "response time"
column holds tokens per second for that row), each named after the user's `kind`. They
count in Locust's "Aggregated" row; the harness's own numbers come from the records.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import gevent
from geventhttpclient.response import HTTPParseError
from locust import FastHttpUser, events
from locust.env import Environment
from locust.runners import WorkerRunner

from aiswarm_loadtest.metrics import itl, tokens_per_second, tpot
from aiswarm_loadtest.options import Settings, add_arguments, default_run_dir
from aiswarm_loadtest.records import RequestRecord
from aiswarm_loadtest.runlog import RecordSink
from aiswarm_loadtest.schedule import FixedSchedule
from aiswarm_loadtest.sse import StreamObserver

CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
# Which deployment served a request, most specific first. LiteLLM sets the first two on
# successful responses (not on errors); our reference backend sets the third.
ATTRIBUTION_HEADERS = ("x-litellm-model-api-base", "x-litellm-model-id", "x-aiswarm-backend")
CHARS_PER_TOKEN = 4  # rough size of a token of English text, to build long prompts

events.init_command_line_parser.add_listener(add_arguments)


@events.init.add_listener
def _resolve_run_dir(environment: Environment, **_kwargs: Any) -> None:
    """Fix the run directory once per process, so every user of it writes to the same place."""
    options = environment.parsed_options
    if options is not None and not getattr(options, "aiswarm_run_dir", ""):
        options.aiswarm_run_dir = default_run_dir()


def attribute(headers: Any, model: str) -> str:
    """Name the backend that served a response: gateway headers, else our header, else model."""
    if headers is not None:
        for name in ATTRIBUTION_HEADERS:
            value = headers.get(name)
            if value:
                return str(value)
    return model


@cache
def load_prompts(prompt_dir: Path, size: str) -> tuple[str, ...]:
    """The prompt set `<prompt_dir>/<size>.json`: a JSON list of strings."""
    path = prompt_dir / f"{size}.json"
    try:
        prompts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"--prompt-size {size}: cannot load {path}: {exc}") from exc
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"{path}: expected a non-empty JSON list of strings")
    return tuple(prompts)


@cache
def long_prompt(prompt_dir: Path, tokens: int) -> str:
    """`<prompt_dir>/long_context.txt` repeated to about `tokens` tokens."""
    passage = (prompt_dir / "long_context.txt").read_text(encoding="utf-8").strip() + "\n\n"
    repeats = tokens * CHARS_PER_TOKEN // len(passage) + 1
    return (passage * repeats)[: tokens * CHARS_PER_TOKEN]


_sinks: dict[Path, RecordSink] = {}


def sink_for(environment: Environment, run_dir: Path) -> RecordSink:
    """This process's record sink for a run directory (one file per process)."""
    if run_dir not in _sinks:
        _sinks[run_dir] = RecordSink(run_dir, per_process=isinstance(environment.runner, WorkerRunner))
    return _sinks[run_dir]


class _Silence(Exception):
    """No bytes within the first-token timeout or the stall threshold."""


class OpenAIUser(FastHttpUser):
    """Abstract user of an OpenAI-compatible gateway; subclasses add a @task.

    Closed loop by default: each user sends its next request when the last one ended. With
    `--per-user-rps R` each user follows a fixed schedule of R requests per second and
    records the slot as `t_intended` (see `schedule`).
    """

    abstract = True
    open_loop: ClassVar[bool] = False  # True: many requests in flight per user (pool size --max-inflight)
    prompt_dir: ClassVar[Path] = Path("loadtests/prompts")
    network_timeout = 60.0
    connection_timeout = 10.0

    def __init__(self, environment: Environment) -> None:
        self.settings = Settings.from_options(environment.parsed_options)
        self.network_timeout = self.settings.request_timeout_s
        if self.open_loop:
            self.concurrency = self.settings.max_inflight
        super().__init__(environment)
        key = self.settings.api_key
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.sink = sink_for(environment, self.settings.run_dir)
        self._schedule: FixedSchedule | None = None
        self._pending_slot: float | None = None
        self._serial = itertools.count(random.randrange(1_000_000))
        self._last_failed = False

    def on_start(self) -> None:
        if self.settings.per_user_rps > 0:
            self._schedule = FixedSchedule(self.settings.per_user_rps, time.time())

    def wait_time(self) -> float:
        if self._schedule is None:
            # Back to back, except after a failure: a refused connection fails in microseconds,
            # and without a pause one user would send thousands of requests a second.
            return self.settings.failure_pause_s if self._last_failed else 0.0
        self._pending_slot = self._schedule.next_slot()
        return max(0.0, self._pending_slot - time.time())

    def intended(self) -> float:
        """When this request should go out: the schedule slot, or now for back-to-back."""
        slot, self._pending_slot = self._pending_slot, None
        if slot is not None:
            return slot
        return self._schedule.next_slot() if self._schedule is not None else time.time()

    def messages(self, text: str | None = None) -> list[dict[str, str]]:
        """One user message from the prompt set, made unique so no cache answers it."""
        if text is None:
            prompts = load_prompts(self.prompt_dir, self.settings.prompt_size)
            text = random.choice(prompts)
        return [{"role": "user", "content": f"{text}\n(request {next(self._serial)})"}]

    def stream_chat(self, name: str, messages: list[dict[str, str]], t_intended: float) -> RequestRecord:
        """Send one streaming chat request, observe every chunk, record and report it."""
        payload = {
            "model": self.settings.model,
            "messages": messages,
            "max_tokens": self.settings.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        t_start = time.time()
        observer = StreamObserver(t_intended, t_start, self.settings.stall_threshold_s)
        with self.client.request(
            "POST", CHAT_PATH, name=name, json=payload, headers=self.headers, stream=True, catch_response=True
        ) as response:
            status = response.status_code or 0
            raw = getattr(response, "_response", None)
            if getattr(response, "error", None) is not None or status != 200 or raw is None:
                observer.transport_failed(_describe(response, status))
            else:
                self._read_stream(raw, observer)
            if raw is not None:
                raw.release()
            failure, reason = observer.classify()
            if failure is None:
                response.success()
            else:
                response.failure(f"{failure}: {reason}")
            backend = attribute(response.headers, observer.model)
        return self.finish(observer.record(name, time.time(), status, backend))

    def _read_stream(self, raw: Any, observer: StreamObserver) -> None:
        """Read the body line by line as it arrives (geventhttpclient's readline returns a
        line as soon as it is complete; `read(n)` would wait for n bytes)."""
        limit = self.settings.request_timeout_s
        try:
            while True:
                if observer.t_first_token is not None:
                    limit = self.settings.stall_threshold_s
                with gevent.Timeout(limit, _Silence):
                    line = raw.readline(b"\n")
                if not line:
                    return
                observer.feed(line, time.time())
                if observer.inband_error or observer.malformed:
                    return
        except _Silence:
            if observer.t_first_token is None:
                observer.transport_failed(f"no first token within {limit:g} s")
            else:
                observer.stall(time.time())
        except (HTTPParseError, OSError) as exc:
            observer.transport_failed(f"{type(exc).__name__}: {exc}")

    def post_json(
        self,
        name: str,
        path: str,
        payload: dict,
        t_intended: float,
        tokens: Callable[[dict], int],
        has_content: Callable[[dict], bool] | None = None,
    ) -> RequestRecord:
        """Send one non-streaming request; a 200 with a JSON object body is a success.

        `has_content`, when given, says whether a successful body carried text; one that did
        not is recorded as `empty` (the content gate counts those)."""
        t_start = time.time()
        with self.client.request(
            "POST", path, name=name, json=payload, headers=self.headers, catch_response=True
        ) as response:
            t_end = time.time()
            status = response.status_code or 0
            body: Any = None
            if status == 200:
                try:
                    body = response.json()
                except (ValueError, TypeError):
                    body = None
            ok = isinstance(body, dict) and "error" not in body
            if ok:
                response.success()
                reason, failure = "", None
            else:
                failure = "error_before_first_token" if status != 200 else "malformed"
                reason = _describe(response, status) if status != 200 else "body is not a JSON result"
                response.failure(f"{failure}: {reason}")
            model = str(body.get("model", "")) if isinstance(body, dict) else ""
            record = RequestRecord(
                kind=name,
                t_intended=t_intended,
                t_start=t_start,
                t_end=t_end,
                ok=ok,
                status=status,
                output_tokens=tokens(body) if ok else 0,
                failure_class=failure,
                backend=attribute(response.headers, model),
                model=model,
                error=reason,
                empty=ok and has_content is not None and not has_content(body),
            )
        return self.finish(record)

    def finish(self, record: RequestRecord) -> RequestRecord:
        """Append the record to this process's file and fire the custom metric entries."""
        self.sink.write(record)
        self._last_failed = not record.ok
        if not record.ok:
            return record
        seconds = {"ttft": record.ttft, "itl": itl(record), "tpot": tpot(record), "e2e": record.e2e}
        for metric, value in seconds.items():
            if value is not None:
                self._fire(metric, record.kind, value * 1000)
        rate = tokens_per_second(record)
        if rate is not None:
            self._fire("tokens/s", record.kind, rate)
        return record

    def _fire(self, metric: str, name: str, value: float) -> None:
        self.environment.events.request.fire(
            request_type=metric, name=name, response_time=value, response_length=0, exception=None, context={}
        )


def completion_tokens(body: dict) -> int:
    """usage.completion_tokens of a non-streaming response, 0 when absent."""
    usage = body.get("usage")
    value = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return value if isinstance(value, int) else 0


def _describe(response: Any, status: int) -> str:
    error = getattr(response, "error", None)
    if error is not None:
        return f"{type(error).__name__}: {error}"[:200]
    return f"HTTP {status}"
