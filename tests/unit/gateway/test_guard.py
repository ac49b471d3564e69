"""The engine guard against real loopback engines: one that answers, one frozen, one refusing.

The frozen engine accepts connections and never answers, like a SIGSTOPped vLLM. A connection the
test holds open to it stands for a live request waiting on it: the guard must release it.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from prometheus_client import REGISTRY

from aiswarm.gateway.guard import (
    EngineGuard,
    Health,
    ProbeResult,
    Settings,
    Target,
    Traffic,
    deployment_id,
    drain_url,
    draining_addresses,
    due,
    socket_inodes,
    target_of,
    traffic,
    verdict,
)

OK_BODY = b'{"choices":[{"message":{"content":"x"}}]}'


def deployment(
    ident: str, api_base: str, engine: str | None = "vllm", key: str = "os.environ/ENGINE_KEY"
) -> dict:
    info = {"id": ident} | ({"aiswarm_engine": engine} if engine else {})
    return {
        "model_name": "swarm-chat",
        "litellm_params": {"model": "hosted_vllm/swarm-chat", "api_base": api_base, "api_key": key},
        "model_info": info,
    }


def test_settings_from_the_environment_name_a_bad_variable() -> None:
    assert Settings.from_env({}) == Settings(1.0, 2.0, 2)
    assert Settings.from_env({"AISWARM_GUARD_TIMEOUT_S": "1.5", "AISWARM_GUARD_FAILURES": "1"}) == Settings(
        1.0, 1.5, 1
    )
    with pytest.raises(ValueError, match="AISWARM_GUARD_FAILURES: expected a int, got 'two'"):
        Settings.from_env({"AISWARM_GUARD_FAILURES": "two"})
    with pytest.raises(ValueError, match="AISWARM_GUARD_INTERVAL_S: expected a positive number"):
        Settings.from_env({"AISWARM_GUARD_INTERVAL_S": "0"})


def test_target_of_a_marked_deployment_resolves_its_key() -> None:
    target = target_of(deployment("a", "http://10.0.0.2:8000/v1/"), {"ENGINE_KEY": "k1"})
    assert target == Target("http://10.0.0.2:8000/v1", "swarm-chat", "k1")
    assert target.address == ("10.0.0.2", 8000)
    assert "k1" not in repr(target)
    assert target_of(deployment("b", "http://10.0.0.2:8000/v1", engine=None), {}) is None


def test_health_flips_after_n_failures_and_back_after_one_success() -> None:
    health = Health(failures_needed=2)
    assert health.record(False, "timeout") is None and health.up
    assert health.record(False, "timeout") is False and not health.up
    assert health.record(False, "timeout") is None
    assert health.record(True) is True and health.up and health.failures == 0


TIMED_OUT = ProbeResult(False, "no answer", timed_out=True)


@pytest.mark.parametrize(
    ("result", "seen", "expected"),
    [
        (ProbeResult(True), Traffic(), (True, False)),
        (ProbeResult(False, "ConnectError: refused"), Traffic(), (False, False)),  # refused: a failure
        (TIMED_OUT, Traffic(3, 0.05, 0), (None, False)),  # data arrived 50 ms ago: busy, not hung
        (TIMED_OUT, Traffic(3, 4.0, 2), (False, True)),  # requests wait, nothing for 4 s: hung now
        (TIMED_OUT, Traffic(2, 4.0, 0), (False, False)),  # idle pooled connections: one failure
        (TIMED_OUT, Traffic(), (False, False)),  # no connection: no evidence, one failure
    ],
)
def test_verdict(result: ProbeResult, seen: Traffic, expected: tuple) -> None:
    assert verdict(result, seen, timeout_s=1.5) == expected


def test_socket_inodes_reads_ipv4_and_mapped_ipv6_rows() -> None:
    # 172.30.57.11:8000 is 0B391EAC:1F40 in /proc/net/tcp (little-endian words).
    head = "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode"
    tail = "00000000:00000000 00:00000000 00000000 999 0"
    tcp = "\n".join(
        [
            head,
            f"0: 0A391EAC:C350 0B391EAC:1F40 01 {tail} 111",
            f"1: 0A391EAC:C351 0B391EAC:1F40 06 {tail} 112",
            f"2: 0A391EAC:C352 0B391EAC:1F41 01 {tail} 113",
            f"3: 0A391EAC:C353 0C391EAC:1F40 02 {tail} 114",
        ]
    )
    mapped = "0000000000000000FFFF0000{}"
    tcp6 = f"{head}\n0: {mapped.format('0A391EAC')}:C354 {mapped.format('0B391EAC')}:1F40 08 {tail} 115"
    # 111 established, 112 TIME_WAIT (ignored), 113 other port, 114 other host, 115 CLOSE_WAIT via IPv6.
    assert socket_inodes([tcp, tcp6], ["172.30.57.11"], 8000) == {"111", "115"}


class Engine:
    """A loopback engine: answers 200, or freezes (accepts and never answers), or is busy (answers
    a probe only after `delay` seconds while it streams a byte every 20 ms to a /stream caller)."""

    def __init__(self) -> None:
        self.frozen = False
        self.delay = 0.0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Engine:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            await reader.readexactly(length)
            if head.startswith(b"GET /health"):
                while self.frozen:
                    await asyncio.sleep(0.02)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
                return
            if head.startswith(b"GET /stream"):
                writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
                while True:
                    while self.frozen:
                        await asyncio.sleep(0.02)
                    writer.write(b"x")
                    await writer.drain()
                    await asyncio.sleep(0.02)
            await asyncio.sleep(self.delay)
            while self.frozen:
                await asyncio.sleep(0.02)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                % len(OK_BODY)
            )
            writer.write(OK_BODY)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _until(condition, seconds: float = 5.0) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        if loop.time() - start > seconds:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
    return loop.time() - start


@pytest.mark.parametrize("failures", [1, 5])
def test_a_frozen_engine_leaves_rotation_its_waiters_are_released_and_it_comes_back(failures: int) -> None:
    """With a request waiting on the frozen engine one timed-out probe is decisive, even when the
    threshold asks for 5 failures (an idle engine would need them)."""

    async def scenario() -> None:
        primary, fallback = await Engine().start(), await Engine().start()
        dead = f"http://127.0.0.1:{_free_port()}/v1"
        guard = EngineGuard(Settings(interval_s=0.05, timeout_s=0.3, failures=failures), {"ENGINE_KEY": "k"})
        group = [deployment("p", primary.api_base), deployment("f", fallback.api_base), deployment("d", dead)]
        try:
            assert (
                await guard.async_filter_deployments("swarm-chat", group, None) == group
            )  # nothing known yet
            await _until(lambda: not guard.health[target_of(group[2], guard.environ)].up)  # refused: out
            assert [
                d["model_info"]["id"] for d in await guard.async_filter_deployments("m", group, None)
            ] == ["p", "f"]

            # A live request waiting on the primary when it freezes.
            reader, writer = await asyncio.open_connection("127.0.0.1", primary.port)
            primary.frozen = True
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()
            waiter = asyncio.ensure_future(reader.read())
            took = await _until(lambda: not guard.health[target_of(group[0], guard.environ)].up)
            assert took < 1.0  # one probe of 0.3 s after at most one interval
            assert await asyncio.wait_for(waiter, 1.0) == b""  # released: end of stream, no answer
            writer.close()
            assert [
                d["model_info"]["id"] for d in await guard.async_filter_deployments("m", group, None)
            ] == ["f"]

            primary.frozen = False
            await _until(lambda: guard.health[target_of(group[0], guard.environ)].up)
            assert [
                d["model_info"]["id"] for d in await guard.async_filter_deployments("m", group, None)
            ] == ["p", "f"]
        finally:
            guard.stopping.set()
            for engine in (primary, fallback):
                engine.frozen = False
                engine.server.close()

    asyncio.run(scenario())


def test_a_busy_engine_that_streams_stays_in_rotation_until_its_streams_stop() -> None:
    """Probes that time out while a live stream from the engine still receives data count for
    nothing: under load the engine (or the gateway's event loop) is slow, not hung."""

    async def scenario() -> None:
        engine = await Engine().start()
        engine.delay = 1.0  # every probe times out (0.3 s)
        guard = EngineGuard(Settings(interval_s=0.05, timeout_s=0.3, failures=1), {"ENGINE_KEY": "k"})
        group = [deployment("p", engine.api_base)]
        target = target_of(group[0], guard.environ)
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
        writer.write(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        await writer.drain()
        drain = asyncio.ensure_future(reader.read())  # the live request, reading its stream
        try:
            await guard.async_filter_deployments("m", group, None)
            await asyncio.sleep(1.5)  # several timed-out probes
            assert guard.health[target].up
            assert traffic(*target.address).freshest_data_s < 0.3  # the stream still receives
            engine.frozen = True  # the stream stops too: now it is hung
            await _until(lambda: not guard.health[target].up)
            await asyncio.wait_for(drain, 1.0)  # released: the live stream ends at once
        finally:
            guard.stopping.set()
            drain.cancel()
            writer.close()
            engine.frozen = False
            engine.server.close()

    asyncio.run(scenario())


SETTINGS = Settings(interval_s=0.25, timeout_s=1.5, failures=1, idle_interval_s=5.0)


@pytest.mark.parametrize(
    ("health", "seen", "since", "expected"),
    [
        (Health(1, up=False), Traffic(3, 0.01, 0), 0.0, True),  # out of rotation: probe for failback
        (Health(2, failures=1), Traffic(), 0.1, True),  # a failure not yet decided
        (Health(1), Traffic(40, 0.05, 12), 0.3, False),  # answers arrive: alive, no probe
        (Health(1), Traffic(4, 0.4, 1), 0.3, True),  # a request waits, nothing for an interval
        (Health(1), Traffic(4, 0.6, 0), 0.3, True),  # quiet for 0.6 s after traffic: a stalled stream?
        (Health(1), Traffic(2, 30.0, 0), 1.0, False),  # idle pool connections, probed 1 s ago
        (Health(1), Traffic(2, 30.0, 0), 5.0, True),  # ... and every idle interval
        (Health(1), Traffic(), float("inf"), True),  # never probed
    ],
)
def test_a_probe_is_due_only_when_traffic_does_not_tell(
    health: Health, seen: Traffic, since: float, expected: bool
) -> None:
    assert due(health, seen, since, SETTINGS) is expected


def test_the_idle_interval_comes_from_the_environment() -> None:
    assert Settings.from_env({"AISWARM_GUARD_IDLE_INTERVAL_S": "2"}).idle_interval_s == 2.0
    with pytest.raises(ValueError, match="AISWARM_GUARD_IDLE_INTERVAL_S: expected a positive number"):
        Settings.from_env({"AISWARM_GUARD_IDLE_INTERVAL_S": "0"})


def test_a_successful_request_marks_its_engine_alive_without_a_probe() -> None:
    guard = EngineGuard(SETTINGS, {"ENGINE_KEY": "k"})
    guard.stopping.set()  # no probe threads for this test
    group = [deployment("p", "http://10.0.0.1:8000/v1"), deployment("f", "http://10.0.0.2:8081/v1")]
    for d in group:
        target = target_of(d, guard.environ)
        guard.targets.setdefault(target, set()).add(d["model_info"]["id"])
    asyncio.run(guard.async_log_success_event({"standard_logging_object": {"model_id": "f"}}, None, 0, 0))
    assert set(guard.answered) == {target_of(group[1], guard.environ)}
    assert deployment_id({"litellm_params": {"model_info": {"id": "p"}}}) == "p"
    assert deployment_id({"standard_logging_object": {"model_id": None}}) is None
    assert deployment_id(None) is None


def test_a_queued_probe_of_an_engine_that_answers_health_counts_for_nothing() -> None:
    """llama-server queues requests beyond its slots: a probe may wait there while this worker's own
    requests wait too and receive nothing. /health still answers, so the engine stays in rotation;
    frozen, it answers nothing and leaves at once."""

    async def scenario() -> None:
        engine = await Engine().start()
        engine.delay = 1.0  # every chat probe (0.3 s timeout) times out: queued
        guard = EngineGuard(Settings(interval_s=0.05, timeout_s=0.3, failures=1), {"ENGINE_KEY": "k"})
        group = [deployment("p", engine.api_base)]
        target = target_of(group[0], guard.environ)
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()  # a request of ours waits in the queue, nothing received
        waiter = asyncio.ensure_future(reader.read())
        try:
            await guard.async_filter_deployments("m", group, None)
            await asyncio.sleep(1.5)
            assert guard.health[target].up
            engine.frozen = True
            await _until(lambda: not guard.health[target].up)
        finally:
            guard.stopping.set()
            waiter.cancel()
            writer.close()
            engine.frozen = False
            engine.server.close()

    asyncio.run(scenario())


def test_the_drain_settings_come_from_the_environment() -> None:
    assert (Settings().drain_port, Settings().drain_interval_s) == (9110, 5.0)
    settings = Settings.from_env(
        {"AISWARM_GUARD_DRAIN_PORT": "19110", "AISWARM_GUARD_DRAIN_INTERVAL_S": "0.5"}
    )
    assert (settings.drain_port, settings.drain_interval_s) == (19110, 0.5)
    with pytest.raises(ValueError, match="AISWARM_GUARD_DRAIN_PORT: expected a int, got 'x'"):
        Settings.from_env({"AISWARM_GUARD_DRAIN_PORT": "x"})


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {
                "draining": [
                    {"service": "vllm", "api_base": "http://172.30.57.11:8000", "reason": "manual: x"}
                ]
            },
            {("172.30.57.11", 8000): "manual: x"},
        ),
        ({"draining": [{"api_base": "https://Engine.Lan"}]}, {("engine.lan", 443): "draining"}),
        (
            {"draining": [{"api_base": "http://[fd00::11]:8081", "reason": "GPU 0 at 86 °C"}]},
            {("fd00::11", 8081): "GPU 0 at 86 °C"},
        ),
        ({"draining": []}, {}),
        (
            {"draining": [{"api_base": 8000}, {"reason": "no base"}, "vllm", {"api_base": "http://h:99999"}]},
            {},
        ),
        ({"draining": "vllm"}, {}),
        (["vllm"], {}),
        (None, {}),
    ],
)
def test_draining_addresses_read_the_agents_list(payload: object, expected: dict) -> None:
    assert draining_addresses(payload) == expected


def test_drain_url_of_an_ipv4_and_an_ipv6_host() -> None:
    assert drain_url("172.30.57.11", 9110) == "http://172.30.57.11:9110/v1/drain"
    assert drain_url("fd00::11", 9110) == "http://[fd00::11]:9110/v1/drain"


class FakeAgent:
    """A node agent's GET /v1/drain on loopback, listing `draining` (api_base -> reason)."""

    def __init__(self) -> None:
        self.draining: dict[str, str] = {}
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> FakeAgent:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = json.dumps(
                {
                    "draining": [
                        {"service": "e", "api_base": b, "reason": r, "since": 1}
                        for b, r in self.draining.items()
                    ]
                }
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
            )
            writer.write(body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def test_a_drained_engine_leaves_rotation_its_open_requests_finish_and_it_comes_back() -> None:
    """Unlike a hung engine, a drained one keeps its connections: a stream on it goes on."""

    async def scenario() -> None:
        engine, fallback, agent = await Engine().start(), await Engine().start(), await FakeAgent().start()
        settings = Settings(
            interval_s=0.05, timeout_s=0.3, failures=1, drain_port=agent.port, drain_interval_s=0.05
        )
        guard = EngineGuard(settings, {"ENGINE_KEY": "k"})
        group = [deployment("p", engine.api_base), deployment("f", f"http://localhost:{fallback.port}/v1")]
        primary = target_of(group[0], guard.environ)
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
        writer.write(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")  # a live request streaming from the engine
        await writer.drain()
        try:
            assert await guard.async_filter_deployments("m", group, None) == group
            agent.draining = {f"http://127.0.0.1:{engine.port}": "GPU 0 at 86 °C, above the limit 83 °C"}
            await _until(lambda: primary in guard.draining)
            assert guard.draining[primary] == "GPU 0 at 86 °C, above the limit 83 °C"
            assert REGISTRY.get_sample_value("aiswarm_engine_draining", {"api_base": primary.api_base}) == 1
            assert [
                d["model_info"]["id"] for d in await guard.async_filter_deployments("m", group, None)
            ] == ["f"]
            assert guard.health[primary].up  # drained, not hung: it still answers its probes
            await asyncio.sleep(0.2)  # several drain polls and probes later
            assert await asyncio.wait_for(reader.read(64), 1.0)  # the open stream still receives
            assert target_of(group[1], guard.environ) not in guard.draining  # the fallback is not listed

            agent.draining = {}
            await _until(lambda: primary not in guard.draining)
            assert await guard.async_filter_deployments("m", group, None) == group
            assert REGISTRY.get_sample_value("aiswarm_engine_draining", {"api_base": primary.api_base}) == 0

            # An agent that stops answering drains nothing.
            agent.draining = {f"http://127.0.0.1:{engine.port}": "manual: maintenance"}
            await _until(lambda: primary in guard.draining)
            agent.server.close()
            await agent.server.wait_closed()
            await _until(lambda: primary not in guard.draining)
            assert await guard.async_filter_deployments("m", group, None) == group
        finally:
            guard.stopping.set()
            writer.close()
            for server in (engine.server, fallback.server):
                server.close()

    asyncio.run(scenario())
