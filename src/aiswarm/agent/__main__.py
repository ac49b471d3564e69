"""``python -m aiswarm.agent``: run the agent, or ask the running one.

    python -m aiswarm.agent [--config PATH] [run]    watch and act (the unit's command)
    python -m aiswarm.agent check                    validate the config file, exit 0 when usable
    python -m aiswarm.agent status                   the local agent's /health and drained engines
    python -m aiswarm.agent drain SERVICE [--reason TEXT]
                                                     drain an engine (the gateway sends it nothing new)
    python -m aiswarm.agent undrain SERVICE          lift that drain

``--config`` defaults to /etc/aiswarm/agent/agent.json.

The client commands read the address, port and token from the config file (root only), and ask
the agent on loopback when it listens there.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from aiswarm.agent.config import DEFAULT_PATH, Config, ConfigError

CLIENT_TIMEOUT_S = 10.0


def _base_url(config: Config) -> str:
    loopback = [a for a in config.listen_addresses if a in ("127.0.0.1", "::1")]
    address = (loopback or list(config.listen_addresses))[0]
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{config.port}"


def request(config: Config, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One call to the agent's API: (HTTP status, decoded JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {config.token}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    call = urllib.request.Request(_base_url(config) + path, data=data, headers=headers, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(call, timeout=CLIENT_TIMEOUT_S) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, {"error": text.decode(errors="replace")}


def _run(config: Config) -> int:
    from aiswarm.agent.agent import Agent, emit  # pylint: disable=import-outside-toplevel  # client commands skip it
    from aiswarm.agent.api import AgentAPI  # pylint: disable=import-outside-toplevel

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    agent = Agent(config)
    api = AgentAPI(agent)
    api.start(config.listen_addresses, config.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    emit("start", listen=list(config.listen_addresses), port=config.port,
         services=[s.name for s in config.services])  # fmt: skip
    try:
        agent.run(stop)
    finally:
        api.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aiswarm.agent", description="The swarm's node agent.")
    parser.add_argument("--config", default=DEFAULT_PATH, help=f"settings file (default {DEFAULT_PATH})")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="watch and act (the default)")
    commands.add_parser("check", help="validate the settings file and exit")
    commands.add_parser("status", help="the local agent's health and drained engines")
    drain = commands.add_parser("drain", help="drain an engine: the gateway sends it no new request")
    drain.add_argument("service")
    drain.add_argument("--reason", default="drained by an operator", help="why, in words (logged and listed)")
    undrain = commands.add_parser("undrain", help="lift an operator's drain")
    undrain.add_argument("service")
    args = parser.parse_args(argv)
    try:
        config = Config.load(args.config)
    except (ConfigError, OSError) as exc:
        print(f"swarm agent: {exc}", file=sys.stderr)
        return 2
    command = args.command or "run"
    if command == "run":
        return _run(config)
    if command == "check":
        return 0
    try:
        if command == "status":
            health_status, health = request(config, "GET", "/health")
            drain_status, drains = request(config, "GET", "/v1/drain")
            status, answer = max(health_status, drain_status), {"health": health, **(drains or {})}
        elif command == "drain":
            status, answer = request(
                config, "POST", "/v1/drain", {"service": args.service, "reason": args.reason}
            )
        else:
            status, answer = request(config, "DELETE", f"/v1/drain/{quote(args.service, safe='')}")
    except (urllib.error.URLError, OSError) as exc:
        print(f"swarm agent: no answer from {_base_url(config)}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
