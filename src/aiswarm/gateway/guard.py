"""Engine guard: probe every local engine, take a hung one out of rotation, release what it holds.

Enabled by ``litellm_settings.callbacks: [aiswarm.gateway.guard.engine_guard]``; the gateway
role adds it with ``litellm_engine_guard_enabled``. It runs inside each LiteLLM worker process.

Why: a frozen engine (SIGSTOP, a wedged GPU, a node cut off the network) accepts connections
and answers nothing. LiteLLM then learns of it only from live requests: each one waits for the
stream timeout, the deployment is cooled down after `allowed_fails` of them, and when the
cooldown ends live requests are sent to it again. LiteLLM's own background health checks do not
help here: they run minutes apart, and their routing filter never removes the last deployment of
a group, which is exactly the case of a primary group with its fallback in another group
(``router.py``, ``_async_filter_health_check_unhealthy_deployments``, 1.108.7).

What it does, for every deployment the gateway config marks with ``model_info.aiswarm_engine``:

- it sends a tiny real request (one token of chat completion, a new connection each time) with
  a timeout of `timeout_s`, from a thread of its own, so a gateway whose event loop is saturated
  cannot make a probe late. It probes only when the engine's own traffic does not already tell
  (`due`): every `interval_s` while requests wait, after the engine went quiet, or while it is
  out of rotation; never while answers arrive; every `idle_interval_s` when idle. A probe costs
  the engine real work (vLLM's CPU build in the lab spent a whole core on four probes a second).
  A probe that got no answer in time
  counts as failed only if the engine also shows no sign of life: when any of this process's
  connections to it received data within the last `timeout_s` (the kernel's
  ``tcpi_last_data_recv``), the engine is busy, not hung, and the probe counts for nothing;
  when requests wait on it (sent, nothing received since) and nothing arrived for as long, it
  is hung now (see `verdict`), unless its server answers ``GET /health``, asked at the same time:
  then the probe waited in the engine's queue (llama-server serves a few slots and queues the
  rest, and another gateway worker may hold them) and counts for nothing (`answers_health`);
- `failures` failed probes in a row (no answer in time and no data, a refused connection, any
  status but 200), or one decisive one, take the engine out of rotation:
  `async_filter_deployments` drops its deployments, so no live request is used as a probe,
  neither when the fault starts nor later (no cooldown expires while it is still hung);
- on that transition it shuts down this process's connections to the engine (read from
  ``/proc/net/tcp*`` and ``/proc/self/fd``), so requests already waiting on it fail at once with
  a connection error and the router's fallbacks serve them, instead of each waiting out the
  stream timeout (HAProxy's ``on-marked-down shutdown-sessions``). A stream that had already
  sent text to its client is cut, as it would have stalled anyway;
- one successful probe puts it back at once.

Draining: the swarm agent on each engine's node (``aiswarm.agent``) may drain the engine (its
GPU above the thermal limit, or an operator's ``POST /v1/drain``). For every host of a guarded
engine a thread of its own asks that host's agent, ``GET http://<host>:<drain_port>/v1/drain``,
every `drain_interval_s` with the probe's timeout, never on the request path. An engine it lists
(matched by the host and port of its ``api_base``) leaves rotation like a hung one, but its open
connections are left alone: requests already on it finish, only new ones go elsewhere. It is back
once the agent no longer lists it; an agent that does not answer (not installed, stopped, cut
off) drains nothing.

A long prompt is not punished: the probe is a separate one-token request, which an engine with
continuous batching serves alongside a long prefill; the stream timeout keeps its own job (a
stream that stops half-way). Settings come from the environment of the gateway's unit:
``AISWARM_GUARD_INTERVAL_S`` (default 1), ``AISWARM_GUARD_TIMEOUT_S`` (2),
``AISWARM_GUARD_FAILURES`` (2), ``AISWARM_GUARD_IDLE_INTERVAL_S`` (5),
``AISWARM_GUARD_DRAIN_PORT`` (9110, the agents' port) and ``AISWARM_GUARD_DRAIN_INTERVAL_S`` (5).
State shows on ``/metrics`` as ``aiswarm_engine_up``, ``aiswarm_engine_draining``,
``aiswarm_engine_probe_seconds`` and ``aiswarm_engine_released_connections_total``.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

try:
    from litellm.integrations.custom_logger import CustomLogger
except ImportError:  # the unit tests and tools that only use the pure parts

    class CustomLogger:  # type: ignore[no-redef]
        """Stand-in base when LiteLLM is not installed."""


try:
    from prometheus_client import Counter, Gauge, Histogram

    _UP: Gauge | None = Gauge(
        "aiswarm_engine_up", "1 while the engine guard keeps an engine in rotation", ["api_base"],
        multiprocess_mode="livemin",
    )  # fmt: skip
    _PROBE: Histogram | None = Histogram(
        "aiswarm_engine_probe_seconds", "Duration of the engine guard's probes", ["api_base"],
        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
    )  # fmt: skip
    _RELEASED: Counter | None = Counter(
        "aiswarm_engine_released_connections", "Connections to a hung engine shut down", ["api_base"]
    )
    _DRAINING: Gauge | None = Gauge(
        "aiswarm_engine_draining", "1 while the engine's node agent drains it", ["api_base"],
        multiprocess_mode="livemax",
    )  # fmt: skip
except ImportError:
    _UP = _PROBE = _RELEASED = _DRAINING = None

MARKER = "aiswarm_engine"
TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
# /proc/net/tcp states worth shutting down: ESTABLISHED, SYN_SENT, CLOSE_WAIT.
LIVE_STATES = frozenset({"01", "02", "08"})
# struct tcp_info (linux/tcp.h): tcpi_last_data_recv, milliseconds since data last arrived.
TCP_INFO_SIZE, LAST_DATA_SENT_OFFSET, LAST_DATA_RECV_OFFSET = 104, 44, 52
log = logging.getLogger("aiswarm.guard")


@dataclass(frozen=True)
class Settings:
    interval_s: float = 1.0
    timeout_s: float = 2.0
    failures: int = 2
    idle_interval_s: float = 5.0
    drain_port: int = 9110
    drain_interval_s: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the AISWARM_GUARD_* variables (default: the process's); a bad value names the variable."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, kind in (
            ("interval_s", float),
            ("timeout_s", float),
            ("failures", int),
            ("idle_interval_s", float),
            ("drain_port", int),
            ("drain_interval_s", float),
        ):
            var = f"AISWARM_GUARD_{name.upper()}"
            if var not in environ:
                continue
            try:
                value = kind(environ[var])
            except ValueError:
                raise ValueError(f"{var}: expected a {kind.__name__}, got {environ[var]!r}") from None
            if value <= 0:
                raise ValueError(f"{var}: expected a positive number, got {environ[var]!r}")
            values[name] = value
        return cls(**values)


@dataclass(frozen=True)
class Target:
    """One engine endpoint, as probed: several deployments may share it."""

    api_base: str
    model: str
    api_key: str = field(repr=False)

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.api_base)
        return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def target_of(deployment: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Target | None:
    """The probe target of a deployment marked with `MARKER`, else None (keys from `environ`)."""
    environ = os.environ if environ is None else environ
    info = deployment.get("model_info") or {}
    params = deployment.get("litellm_params") or {}
    if not info.get(MARKER) or not params.get("api_base"):
        return None
    key = str(params.get("api_key") or "")
    if key.startswith("os.environ/"):
        key = environ.get(key.removeprefix("os.environ/"), "")
    served = str(params.get("model", "")).split("/", 1)[-1]
    return Target(api_base=str(params["api_base"]).rstrip("/"), model=served, api_key=key)


@dataclass
class Health:
    """Probe outcomes of one target; `up` flips after `failures` failures in a row or one success."""

    failures_needed: int
    up: bool = True
    failures: int = 0
    last_error: str = ""

    def record(self, ok: bool, error: str = "", decisive: bool = False) -> bool | None:
        """Record a probe (`decisive`: out at once); return the new state when it changed, else None."""
        if ok:
            self.failures, self.last_error = 0, ""
            if not self.up:
                self.up = True
                return True
            return None
        self.failures += 1
        self.last_error = error
        if self.up and (decisive or self.failures >= self.failures_needed):
            self.up = False
            return False
        return None


def _hex_address(text: str) -> bytes:
    """An address of /proc/net/tcp*: 32-bit words of hex in host (little-endian) order."""
    return b"".join(bytes.fromhex(text[i : i + 8])[::-1] for i in range(0, len(text), 8))


def socket_inodes(tables: Iterable[str], addresses: Iterable[str], port: int) -> set[str]:
    """Inodes of live sockets whose remote end is one of `addresses` (IPv4 or IPv6) at `port`."""
    wanted = set()
    for address in addresses:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
        wanted.add(packed)
        if len(packed) == 4:  # the same peer seen from an IPv6 socket (::ffff:a.b.c.d)
            wanted.add(b"\0" * 10 + b"\xff\xff" + packed)
    inodes = set()
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 10 or fields[3] not in LIVE_STATES:
                continue
            remote, _colon, remote_port = fields[2].partition(":")
            if int(remote_port, 16) == port and _hex_address(remote) in wanted:
                inodes.add(fields[9])
    return inodes


def connections_to(host: str, port: int, proc: Path = Path("/proc")) -> list[socket.socket]:
    """Duplicates of this process's live TCP connections to host:port (close them after use).

    Found through /proc/net/tcp* (remote address and port -> socket inode) and /proc/self/fd
    (descriptor -> inode). A duplicate reaches the same socket: getsockopt reads it, shutdown()
    acts on it for every descriptor.
    """
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except OSError:
        return []
    tables = []
    for name in TCP_TABLES:
        try:
            tables.append((proc / Path(name).relative_to("/proc")).read_text())
        except OSError:
            continue
    inodes = socket_inodes(tables, addresses, port)
    found = []
    fd_dir = proc / "self" / "fd"
    for entry in os.listdir(fd_dir) if inodes else ():
        try:
            if os.readlink(fd_dir / entry)[8:-1] in inodes:
                found.append(socket.socket(fileno=os.dup(int(entry))))
        except OSError:
            continue
    return found


def release_connections(host: str, port: int) -> int:
    """Shut down this process's TCP connections to host:port; return how many.

    Whoever owns each socket then reads end-of-stream at once and fails its request.
    """
    released = 0
    for sock in connections_to(host, port):
        with sock:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                released += 1
            except OSError:
                continue
    return released


@dataclass(frozen=True)
class Traffic:
    """What this process's connections to an engine show, from the kernel's tcp_info."""

    connections: int = 0
    freshest_data_s: float | None = None  # since any of them last received data
    waiting: int = 0  # sent since they last received: a request waits for its answer


def traffic(host: str, port: int) -> Traffic:
    """`Traffic` of host:port (tcpi_last_data_sent and tcpi_last_data_recv, per connection)."""
    received, waiting = [], 0
    socks = connections_to(host, port)
    for sock in socks:
        with sock:
            try:
                info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE)
            except OSError:
                continue
            if len(info) < LAST_DATA_RECV_OFFSET + 4:
                continue
            sent_ms = struct.unpack_from("I", info, LAST_DATA_SENT_OFFSET)[0]
            recv_ms = struct.unpack_from("I", info, LAST_DATA_RECV_OFFSET)[0]
            received.append(recv_ms / 1000.0)
            # Equal when the request went out in the same clock tick (jiffy) as the connection was
            # made, which is when a fresh connection last "received"; an answered request's reply
            # comes later than the request itself.
            waiting += sent_ms <= recv_ms
    return Traffic(len(socks), min(received, default=None), waiting)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    error: str = ""
    timed_out: bool = False  # no answer within the timeout (as opposed to refused or an error status)
    busy: bool = False  # timed out, but the engine's server answered /health: queued, not hung


def probe(client: Any, target: Target) -> ProbeResult:
    """One tiny real request through `client` (an httpx.Client whose timeout is the probe's)."""
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    body = {"model": target.model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
    try:
        response = client.post(f"{target.api_base}/chat/completions", json=body, headers=headers)
    except Exception as exc:  # pylint: disable=broad-exception-caught  # any transport error is a failed probe
        timed_out = "Timeout" in type(exc).__name__
        error = "no answer within the probe timeout" if timed_out else f"{type(exc).__name__}: {exc}"
        return ProbeResult(False, error[:200], timed_out)
    if response.status_code != 200:
        return ProbeResult(False, f"HTTP {response.status_code}")
    return ProbeResult(True)


def due(health: Health, seen: Traffic, since_probe_s: float, settings: Settings) -> bool:
    """Whether to probe now, given what this process's connections to the engine show.

    A probe is a real request, which costs the engine (about 0.2 s of CPU for vLLM's CPU build),
    so it is sent only when nothing else tells the state:

    - out of rotation, or a failure not yet decided: probe every `interval_s` (quick failback);
    - data arrived within `interval_s`: the engine is alive, no probe;
    - a request waits for its answer, or the engine went quiet less than `idle_interval_s` ago
      (a stream may have stalled): probe every `interval_s`;
    - otherwise (idle): probe every `idle_interval_s`.
    """
    if not health.up or health.failures:
        return True
    fresh = seen.freshest_data_s
    if fresh is not None and fresh < settings.interval_s:
        return False
    if seen.waiting or (fresh is not None and fresh < settings.idle_interval_s):
        return True
    return since_probe_s >= settings.idle_interval_s


def drain_url(host: str, port: int) -> str:
    """The agent's drain list on an engine's host."""
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1/drain"


def draining_addresses(payload: Any) -> dict[tuple[str, int], str]:
    """The engines an agent's ``GET /v1/drain`` answer lists: (host, port) -> reason.

    ``{"draining": [{"service": ..., "api_base": "http://host:port", "reason": ..., "since": ...}]}``;
    an entry without a usable ``api_base``, or an answer of another shape, lists nothing.
    """
    entries = payload.get("draining") if isinstance(payload, Mapping) else None
    found: dict[tuple[str, int], str] = {}
    for entry in entries if isinstance(entries, list) else []:
        base = entry.get("api_base") if isinstance(entry, Mapping) else None
        if not isinstance(base, str):
            continue
        parts = urlsplit(base)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            continue
        if parts.hostname:
            found[(parts.hostname.lower(), port)] = str(entry.get("reason") or "draining")
    return found


def fetch_draining(client: Any, url: str) -> dict[tuple[str, int], str]:
    """`draining_addresses` of one agent through `client` (an httpx.Client); {} when it does not answer."""
    try:
        response = client.get(url)
        return draining_addresses(response.json()) if response.status_code == 200 else {}
    except Exception:  # pylint: disable=broad-exception-caught  # unreachable or garbled: drains nothing
        return {}


def deployment_id(kwargs: Any) -> str | None:
    """The id of the deployment a LiteLLM logging call is about (its `model_info.id`), if any."""
    if not isinstance(kwargs, Mapping):
        return None
    payload = kwargs.get("standard_logging_object")
    if isinstance(payload, Mapping) and payload.get("model_id"):
        return str(payload["model_id"])
    params = kwargs.get("litellm_params")
    info = params.get("model_info") if isinstance(params, Mapping) else None
    if isinstance(info, Mapping) and info.get("id"):
        return str(info["id"])
    return None


def answers_health(client: Any, target: Target, timeout_s: float) -> bool:
    """Whether the engine's HTTP server answers ``GET /health`` (vLLM and llama-server both serve it
    without a key, from outside their generation loop) within `timeout_s`.

    A chat probe that timed out may have waited in the engine's queue behind other gateways'
    or other workers' requests (llama-server serves a few slots and queues the rest); an engine
    that still answers this is busy, not hung. A stopped or cut-off one does not answer.
    """
    parts = urlsplit(target.api_base)
    try:
        response = client.get(f"{parts.scheme}://{parts.netloc}/health", timeout=timeout_s)
    except Exception:  # pylint: disable=broad-exception-caught  # any transport error: no answer
        return False
    return response.status_code == 200


def verdict(result: ProbeResult, seen: Traffic, timeout_s: float) -> tuple[bool | None, bool]:
    """How a probe counts: `(ok, decisive)`; ok None means it counts for nothing.

    A probe that timed out while data still arrives from the engine (within the timeout) is a
    busy engine or a late gateway, not a hang: it counts for nothing. One that timed out while
    requests wait on the engine and none of its connections received anything for as long is
    decisive: the engine is hung now, whatever the failure threshold. Otherwise a timeout is one
    failure among `failures` (an idle engine: no evidence either way).
    """
    if result.busy:
        return None, False
    if result.ok or not result.timed_out:
        return result.ok, False
    if seen.freshest_data_s is not None and seen.freshest_data_s < timeout_s:
        return None, False
    return False, seen.waiting > 0


class EngineGuard(CustomLogger):
    """Keeps hung or dead local engines out of rotation; see the module docstring.

    Each engine is probed from a thread of its own, so a gateway whose event loop is saturated
    cannot make a probe late; the routing filter only reads the result.
    """

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.environ = os.environ if environ is None else environ
        self.targets: dict[Target, set[str]] = {}  # target -> deployment ids
        self.health: dict[Target, Health] = {}
        self.answered: dict[Target, float] = {}  # target -> monotonic time of its last successful request
        self._threads: dict[Target, threading.Thread] = {}
        self.draining: dict[Target, str] = {}  # target -> why its node's agent drains it
        self._drain_threads: dict[str, threading.Thread] = {}  # engine host -> its agent's poller
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    @classmethod
    def from_env(cls) -> EngineGuard:
        return cls(Settings.from_env())

    @property
    def down_ids(self) -> set[str]:
        """Deployments out of rotation: their engine is hung or dead, or its node's agent drains it."""
        return {
            i
            for target, ids in list(self.targets.items())
            if not self.health[target].up or target in self.draining
            for i in ids
        }

    def watch(self, deployments: Iterable[Mapping[str, Any]]) -> None:
        """Start probing every marked deployment not watched yet."""
        for deployment in deployments:
            target = target_of(deployment, self.environ)
            if target is None:
                continue
            ident = str((deployment.get("model_info") or {}).get("id"))
            if ident in self.targets.get(target, ()):
                continue
            with self._lock:
                self.targets.setdefault(target, set()).add(ident)
                if target not in self._threads:
                    self.health[target] = Health(self.settings.failures)
                    name = f"aiswarm-guard {target.api_base}"
                    thread = threading.Thread(target=self._watch, args=(target,), name=name, daemon=True)
                    self._threads[target] = thread
                    thread.start()
                host = target.address[0].lower()
                if host not in self._drain_threads:
                    name = f"aiswarm-guard drains {host}"
                    poller = threading.Thread(target=self._watch_drains, args=(host,), name=name, daemon=True)
                    self._drain_threads[host] = poller
                    poller.start()

    def _watch(self, target: Target) -> None:
        import httpx  # pylint: disable=import-outside-toplevel  # LiteLLM's own dependency

        limits = httpx.Limits(max_keepalive_connections=0)
        last_probe = float("-inf")
        with (
            httpx.Client(timeout=self.settings.timeout_s, limits=limits) as client,
            httpx.Client(timeout=self.settings.timeout_s, limits=limits) as health_client,
        ):
            while not self.stopping.is_set():
                started = time.monotonic()
                if not self._wants_probe(target, started, started - last_probe):
                    self.stopping.wait(self.settings.interval_s)
                    continue
                last_probe = started
                # /health is asked at the same time as the chat probe, with as much patience, so that
                # a starved but live server has the whole timeout to answer and a hung one costs
                # nothing more than the probe's own timeout.
                alive: list[bool] = []
                checker = threading.Thread(
                    target=self._health_into, args=(health_client, target, alive), daemon=True
                )
                checker.start()
                result = probe(client, target)
                if result.timed_out:
                    checker.join(self.settings.timeout_s)
                if result.timed_out and alive and alive[0]:
                    # Queued behind other requests, not hung: the probe counts for nothing.
                    result = ProbeResult(False, "busy: the probe waited in the engine's queue", busy=True)
                if _PROBE is not None:
                    _PROBE.labels(api_base=target.api_base).observe(time.monotonic() - started)
                try:
                    self.apply(target, result)
                except Exception:  # pylint: disable=broad-exception-caught  # the watch must outlive any surprise
                    log.exception("engine guard: could not act on a probe of %s", target.api_base)
                self.stopping.wait(self.settings.interval_s)

    def _watch_drains(self, host: str) -> None:
        import httpx  # pylint: disable=import-outside-toplevel  # LiteLLM's own dependency

        url = drain_url(host, self.settings.drain_port)
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=self.settings.timeout_s, limits=limits, trust_env=False) as client:
            while not self.stopping.is_set():
                try:
                    self.apply_drains(host, fetch_draining(client, url))
                except Exception:  # pylint: disable=broad-exception-caught  # the poll must outlive any surprise
                    log.exception("engine guard: could not act on the drain list of %s", url)
                self.stopping.wait(self.settings.drain_interval_s)

    def apply_drains(self, host: str, listed: Mapping[tuple[str, int], str]) -> None:
        """Take the engines of `host` that its agent lists out of rotation, and put back the others.

        Their connections stay open: what they serve now finishes (unlike a hung engine's)."""
        with self._lock:
            targets = [t for t in self.targets if t.address[0].lower() == host]
        for target in targets:
            hostname, port = target.address
            reason = listed.get((hostname.lower(), port))
            if reason is not None and target not in self.draining:
                self.draining[target] = reason
                log.warning(
                    "engine %s drained by its node's agent (%s): out of rotation, open requests finish",
                    target.api_base, reason,
                )  # fmt: skip
            elif reason is None and target in self.draining:
                del self.draining[target]
                log.warning("engine %s no longer drained: back in rotation", target.api_base)
            else:
                continue
            if _DRAINING is not None:
                _DRAINING.labels(api_base=target.api_base).set(1 if reason is not None else 0)

    def _wants_probe(self, target: Target, now: float, since_probe_s: float) -> bool:
        """`due`, after the cheapest evidence: a request to the engine succeeded within the interval
        (then no /proc read either: under load that read, every interval, cost more than the probes
        it saved)."""
        health = self.health[target]
        recent = now - self.answered.get(target, float("-inf")) < self.settings.interval_s
        if health.up and not health.failures and recent:
            return False
        try:
            return due(health, traffic(*target.address), since_probe_s, self.settings)
        except Exception:  # pylint: disable=broad-exception-caught  # when in doubt, probe
            return True

    def _health_into(self, client: Any, target: Target, out: list[bool]) -> None:
        out.append(answers_health(client, target, self.settings.timeout_s))

    def apply(self, target: Target, result: ProbeResult) -> None:
        """Count a probe (see `verdict`) and act on a change of state."""
        seen = traffic(*target.address) if result.timed_out else Traffic()  # /proc is read only then
        ok, decisive = verdict(result, seen, self.settings.timeout_s)
        if ok is None:
            return
        changed = self.health[target].record(ok, result.error, decisive)
        if changed is None:
            return
        if _UP is not None:
            _UP.labels(api_base=target.api_base).set(1 if changed else 0)
        if changed:
            log.warning("engine %s answers again: back in rotation", target.api_base)
            return
        released = release_connections(*target.address)
        if _RELEASED is not None and released:
            _RELEASED.labels(api_base=target.api_base).inc(released)
        log.warning(
            "engine %s out of rotation (%s%s); %d connection(s) to it released",
            target.api_base, result.error, ", requests waiting on it received nothing" if decisive else "",
            released,
        )  # fmt: skip

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Note that the deployment's engine answered: the cheapest evidence that it is alive."""
        ident = deployment_id(kwargs)
        if ident is None:
            return
        now = time.monotonic()
        for target, ids in list(self.targets.items()):
            if ident in ids:
                self.answered[target] = now

    def _seed_from_router(self) -> None:
        try:
            from litellm.proxy.proxy_server import llm_router  # pylint: disable=import-outside-toplevel
        except ImportError:
            return
        if llm_router is not None:
            self.watch(llm_router.model_list)

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list,
        messages: list | None,
        request_kwargs: dict | None = None,
        parent_otel_span: Any = None,
    ) -> list:
        if not self._threads:
            self._seed_from_router()
        self.watch(healthy_deployments)
        down = self.down_ids
        if not down:
            return healthy_deployments
        return [d for d in healthy_deployments if str((d.get("model_info") or {}).get("id")) not in down]


engine_guard = EngineGuard.from_env()
