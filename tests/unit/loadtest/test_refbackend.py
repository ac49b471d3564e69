"""The reference backend on loopback: timing as configured, failures as configured, auth."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from aiswarm_loadtest.refbackend import BackendConfig, main, serve_in_process
from aiswarm_loadtest.refbackend import serve_in_thread as serve
from aiswarm_loadtest.sse import StreamObserver

KEY = "sk-test"
HEADERS = {"Authorization": f"Bearer {KEY}"}
STREAMS = 250  # at 20 ms between tokens: 12 500 events/s from one backend process
LATE = 0.030  # generous for a busy shared machine; on an idle one the median is 0.5 ms late
STREAM = {"model": "x", "messages": [], "stream": True, "stream_options": {"include_usage": True}}


def _stream(url: str, payload: dict | None = None) -> tuple[StreamObserver, httpx.Response]:
    payload = STREAM if payload is None else payload
    with httpx.Client(timeout=5) as client:
        t0 = time.time()
        observer = StreamObserver(t0, t0, stall_threshold_s=0.5)
        with client.stream("POST", f"{url}/v1/chat/completions", json=payload, headers=HEADERS) as response:
            try:
                for chunk in response.iter_raw():
                    observer.feed(chunk, time.time())
            except httpx.HTTPError as exc:
                observer.transport_failed(str(exc))
    return observer, response


async def _raw_stream(port: int, delay: float = 0.0) -> tuple[float, float]:
    """One streaming request over a bare socket; returns (first token, end) seconds from send."""
    await asyncio.sleep(delay)
    body = json.dumps({"stream": True}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.perf_counter()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nconnection: close\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    first, tail = 0.0, b""
    while chunk := await reader.read(65536):
        if not first and b"data: " in tail + chunk:
            first = time.perf_counter() - start
        tail = (tail + chunk)[-64:]
    writer.close()
    assert tail.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    return first, time.perf_counter() - start


def test_stream_timing_matches_configuration() -> None:
    config = BackendConfig(name="ref-a", model="m-a", ttft_ms=40, itl_ms=5, tokens=20, api_key=KEY)
    with serve(config) as url:
        observer, response = _stream(url)
    assert response.headers["x-aiswarm-backend"] == "ref-a"
    assert observer.classify() == (None, "") and observer.model == "m-a"
    assert observer.output_tokens == 20 and len(observer.chunk_gaps) == 19
    ttft = observer.t_first_token - observer.t_start
    assert 0.040 <= ttft < 0.040 + LATE
    mean_gap = sum(observer.chunk_gaps) / len(observer.chunk_gaps)
    assert mean_gap == pytest.approx(0.005, abs=LATE / 19)  # scheduled from the start: no drift


def test_holds_hundreds_of_concurrent_streams_on_time() -> None:
    async def run(port: int) -> list[tuple[float, float]]:
        # staggered 1 ms apart like a fast ramp: all are open at once from 250 ms to 430 ms
        return await asyncio.gather(*(_raw_stream(port, i / 1000) for i in range(STREAMS)))

    with serve_in_process(["--ttft-ms", "50", "--itl-ms", "20", "--tokens", "20"]) as url:
        results = asyncio.run(run(int(url.rsplit(":", 1)[1])))
    firsts = sorted(r[0] for r in results)
    streaming = sorted(end - first for first, end in results)
    # never early; late only by what a busy shared machine adds
    assert firsts[0] >= 0.050
    assert firsts[STREAMS // 2] < 0.050 + LATE
    # tokens are scheduled from each stream's start: lateness does not add up over 19 gaps
    assert streaming[STREAMS // 2] == pytest.approx(19 * 0.020, abs=LATE)


def test_oversleeping_does_not_accumulate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every sleep overshoots by 2 ms; tokens scheduled from the start end 2 ms late, not 80."""
    real_sleep = asyncio.sleep

    async def late_sleep(delay: float) -> None:
        await real_sleep(delay + 0.002)

    monkeypatch.setattr(asyncio, "sleep", late_sleep)
    with serve(BackendConfig(ttft_ms=10, itl_ms=5, tokens=40, api_key=KEY)) as url:
        observer, _response = _stream(url)
    assert observer.t_done is not None
    duration = observer.t_done - observer.t_start
    assert 0.010 + 39 * 0.005 + 0.002 <= duration < 0.207 + 0.040  # drift would be >= 0.285


def test_non_streaming_embeddings_models_and_health() -> None:
    config = BackendConfig(tokens=8, model="m-b")
    with serve(config) as url, httpx.Client(base_url=url, timeout=5) as client:
        chat = client.post("/v1/chat/completions", json={"messages": [], "max_tokens": 3}).json()
        assert chat["usage"]["completion_tokens"] == 3 and chat["choices"][0]["finish_reason"] == "length"
        emb = client.post("/v1/embeddings", json={"input": ["a", "b"]}).json()
        assert len(emb["data"]) == 2 and len(emb["data"][0]["embedding"]) == 16
        assert client.get("/v1/models").json()["data"][0]["id"] == "m-b"
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/nope").status_code == 404
        assert client.post("/v1/chat/completions", content=b"{not json").status_code == 400


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_rejects_missing_or_wrong_key(headers: dict) -> None:
    with serve(BackendConfig(api_key=KEY)) as url:
        response = httpx.get(f"{url}/v1/models", headers=headers)
        assert response.status_code == 401
        assert "invalid api key" in response.json()["error"]["message"]
        assert httpx.get(f"{url}/health").status_code == 200  # health needs no key


@pytest.mark.parametrize(
    ("fault", "failure"),
    [
        ({"fail_rate": 1.0}, "error_before_first_token"),
        ({"cut_rate": 1.0}, "cut_without_done"),
        ({"inband_error_rate": 1.0}, "inband_error"),
        ({"stall_rate": 1.0, "stall_ms": 800}, "stall"),
    ],
)
def test_failure_modes_classify_as_intended(fault: dict, failure: str) -> None:
    config = BackendConfig(ttft_ms=5, itl_ms=1, tokens=10, fault_after=3, api_key=KEY, **fault)
    with serve(config) as url:
        observer, response = _stream(url)
        if response.status_code != 200:
            observer.transport_failed(f"HTTP {response.status_code}")
    assert observer.classify()[0] == failure
    chunks = {"error_before_first_token": 0, "stall": 10}.get(failure, 3)
    assert observer.content_chunks == chunks


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ValueError, match="cut_rate"):
        BackendConfig(cut_rate=1.5)
    with pytest.raises(SystemExit):
        main(["--ttft-ms", "-1"])


def test_cli_help_names_it_a_test_instrument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "TEST INSTRUMENT" in capsys.readouterr().out
