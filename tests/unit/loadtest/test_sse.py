"""SSE parser and stream classifier against recorded byte fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiswarm_loadtest.records import FAILURE_CLASSES
from aiswarm_loadtest.sse import SseParser, StreamObserver, interpret, message_content

FIXTURES = Path(__file__).parent / "fixtures"


def _fixture(name: str) -> bytes:
    """A fixture's wire bytes. `crlf_*` fixtures are stored with LF line endings (ansible-test's
    line-endings sanity check rejects CRLF files) and sent with CRLF, as a server would."""
    data = (FIXTURES / name).read_bytes()
    return data.replace(b"\n", b"\r\n") if name.startswith("crlf_") else data


def _events(data: bytes, sizes: int | None = None) -> list:
    parser = SseParser()
    if sizes is None:
        return parser.feed(data)
    events = []
    for i in range(0, len(data), sizes):
        events.extend(parser.feed(data[i : i + sizes]))
    return events


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.sse")))
def test_events_do_not_depend_on_chunk_boundaries(name: str) -> None:
    data = _fixture(name)
    whole = _events(data)
    assert whole, "every fixture holds at least one event"
    for size in (1, 2, 3, 7, 64):
        assert _events(data, size) == whole
    for cut in range(len(data)):  # every two-chunk split, including inside \r\n and UTF-8
        parser = SseParser()
        assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == whole


def test_refbackend_stream_with_usage() -> None:
    events = _events(_fixture("refbackend_ok.sse"))
    assert [e.kind for e in events] == ["chunk", "chunk", "chunk", "chunk", "done"]
    assert [e.content for e in events[:3]] == ["tok ", "tok ", "tok "]
    assert events[3].completion_tokens == 3 and events[3].content == ""
    assert events[2].finish_reason == "length" and events[0].model == "ref-model"


def test_crlf_fixture_is_sent_with_crlf_only() -> None:
    data = _fixture("crlf_keepalive.sse")
    assert data.count(b"\r\n") == data.count(b"\n") > 0 and b"\r\r" not in data


def test_crlf_comments_and_role_only_chunk() -> None:
    events = _events(_fixture("crlf_keepalive.sse"))
    assert [(e.kind, e.content) for e in events] == [
        ("chunk", ""),
        ("chunk", "Hé"),
        ("chunk", "llo"),
        ("done", ""),
    ]


def test_multiline_data_is_joined_with_newline() -> None:
    events = _events(_fixture("cut_after_tokens.sse"))
    assert [e.content for e in events] == ["one", " two"]


@pytest.mark.parametrize(
    ("data", "kind", "error"),
    [
        ("[DONE]", "done", ""),
        ("not json", "malformed", "data is not JSON"),
        ("[1, 2]", "malformed", "not a JSON object"),
        ('{"id": "x"}', "malformed", "no 'choices'"),
        ('{"choices": [{"delta": {"content": 5}}]}', "malformed", "not a string"),
        ('{"error": {"message": "boom"}}', "error", "boom"),
        ('{"error": "plain"}', "error", "plain"),
    ],
)
def test_interpret(data: str, kind: str, error: str) -> None:
    event = interpret(data)
    assert event.kind == kind
    assert error in event.error


def test_event_error_field_and_lone_cr_line_endings() -> None:
    events = SseParser().feed(b"event: error\rdata: overloaded\r\rdata: [DONE]\r\r")
    assert [(e.kind, e.error) for e in events] == [("error", "overloaded"), ("done", "")]


def _observe(name: str, times: list[float] | None = None, stall: float = 1.0) -> StreamObserver:
    observer = StreamObserver(t_intended=100.0, t_start=100.5, stall_threshold_s=stall)
    data = _fixture(name)
    blocks = data.split(b"\n\n") if b"\r\n" not in data else data.split(b"\r\n\r\n")
    sep = b"\n\n" if b"\r\n" not in data else b"\r\n\r\n"
    clock = iter(times or [101.0 + 0.1 * i for i in range(len(blocks))])
    for block in blocks:
        if block:
            observer.feed(block + sep, next(clock))
    return observer


def test_observer_ok_stream_timing_and_record() -> None:
    observer = _observe("refbackend_ok.sse")
    assert observer.classify() == (None, "")
    record = observer.record("chat_stream", t_end=200.0, status=200, backend="b1")
    assert record.ok and record.failure_class is None
    assert record.t_first_token == 101.0
    assert record.ttft == pytest.approx(1.0)  # from t_intended, not t_start
    assert record.chunk_gaps == pytest.approx([0.1, 0.1])
    assert record.output_tokens == 3  # from the usage event
    assert record.t_end == pytest.approx(101.4)  # the [DONE] time, not the caller's t_end


def test_a_stream_with_no_text_is_an_empty_success() -> None:
    """What the lab's old vLLM model did on ~46 % of requests: role chunk, empty deltas, [DONE]."""
    observer = StreamObserver(t_intended=100.0, t_start=100.0, stall_threshold_s=5.0)
    for i, data in enumerate(
        [
            '{"object":"chat.completion.chunk","model":"m","choices":[{"delta":{"role":"assistant"}}]}',
            '{"object":"chat.completion.chunk","model":"m","choices":[{"delta":{"content":""}}]}',
            "[DONE]",
        ]
    ):
        observer.feed(f"data: {data}\n\n".encode(), 100.1 + i * 0.1)
    record = observer.record("chat_stream", t_end=101.0, status=200, backend="b")
    assert record.ok and record.empty and record.ttft is None
    ok = _observe("refbackend_ok.sse").record("chat_stream", t_end=200.0, status=200, backend="b")
    assert not ok.empty


@pytest.mark.parametrize(
    ("body", "has_text"),
    [
        ({"choices": [{"message": {"role": "assistant", "content": "hi"}}]}, True),
        ({"choices": [{"message": {"role": "assistant", "content": ""}}]}, False),
        ({"choices": [{"message": {"role": "assistant", "content": None}}]}, False),
        ({"choices": []}, False),
        ({}, False),
    ],
)
def test_message_content(body: dict, has_text: bool) -> None:
    assert message_content(body) is has_text


def test_observer_counts_chunks_without_usage() -> None:
    observer = _observe("crlf_keepalive.sse")
    assert observer.classify() == (None, "")
    assert observer.output_tokens == 2 and observer.model == "m1"


@pytest.mark.parametrize(
    ("name", "failure"),
    [
        ("cut_after_tokens.sse", "cut_without_done"),
        ("inband_error.sse", "inband_error"),
        ("error_first.sse", "error_before_first_token"),
        ("malformed.sse", "malformed"),
    ],
)
def test_observer_failure_classes(name: str, failure: str) -> None:
    observer = _observe(name)
    assert failure in FAILURE_CLASSES
    assert observer.classify()[0] == failure
    record = observer.record("chat_stream", t_end=150.0, status=200, backend="")
    assert not record.ok and record.failure_class == failure and record.t_end == 150.0


def test_observer_gap_over_threshold_is_a_stall_even_if_completed() -> None:
    observer = _observe("refbackend_ok.sse", times=[101.0, 101.1, 103.5, 103.6, 103.7], stall=2.0)
    failure, reason = observer.classify()
    assert failure == "stall" and "2.400 s" in reason


def test_observer_gave_up_waiting_is_a_stall() -> None:
    observer = StreamObserver(t_intended=0.0, t_start=0.0, stall_threshold_s=1.0)
    observer.feed(_fixture("cut_after_tokens.sse"), 0.2)
    observer.stall(1.5)
    assert observer.classify() == ("stall", "no chunk for 1.300 s (threshold 1 s)")


def test_observer_transport_failure_before_any_content() -> None:
    observer = StreamObserver(t_intended=0.0, t_start=0.0, stall_threshold_s=1.0)
    observer.transport_failed("HTTP 500")
    assert observer.classify() == ("error_before_first_token", "HTTP 500")
    assert observer.record("chat_stream", 0.3, 500, "").status == 500


def test_observer_ignores_events_after_done() -> None:
    observer = _observe("refbackend_ok.sse")
    observer.feed(b'data: {"error": "late"}\n\n', 300.0)
    assert observer.classify() == (None, "")
