"""Drive a paid model group until the spend guard stops it, printing the guard's gauges after
each request: the cost-overrun signal must come before the stop, the stop must be a 429 that
names the spent budget, and `swarm-auto` must then route a complex prompt to a free or local
group and say so (``x-aiswarm-budget-stop``).

Run it against a gateway converged with a tiny budget (the lab, with its stand-in providers)::

    ansible-playbook -i inventories/lab/hosts.yml playbooks/gateway.yml \\
        -e '{"litellm_spend_budgets_usd": {"premium": 0.0005}}'
    AISWARM_API_KEY=sk-... python -m aiswarm_loadtest.spendcheck --scope premium --model hermes-3-405b

Exit codes: 0 when the overrun came first, the stop came within ``--max-requests`` and
swarm-auto was rerouted; 1 when one of those did not happen; 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import uuid
from collections.abc import Sequence

from aiswarm_loadtest.options import positive_int

GAUGES = ("month_usd", "budget_usd", "plan_usd", "overrun", "stopped")


def spend_gauges(metrics: str, scope: str) -> dict[str, float]:
    """The spend guard's gauges of one scope from a Prometheus text exposition."""
    pattern = re.compile(
        r"^aiswarm_spend_(" + "|".join(GAUGES) + r")\{[^}]*scope=\"" + re.escape(scope) + r"\"[^}]*\} (\S+)$"
    )
    found = {}
    for line in metrics.splitlines():
        match = pattern.match(line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aiswarm_loadtest.spendcheck", description=__doc__.split("\n\n", maxsplit=1)[0]
    )
    parser.add_argument(
        "--gateway", default="http://127.0.0.1:4000", help="the gateway (default %(default)s)"
    )
    parser.add_argument("--scope", default="premium", help="the budget's scope (default %(default)s)")
    parser.add_argument("--model", default="hermes-3-405b", help="a paid model group of that scope")
    parser.add_argument("--max-requests", type=positive_int, default=40, help="give up after this many")
    parser.add_argument("--api-key-env", default="AISWARM_API_KEY", help="variable holding the gateway key")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import httpx

    args = build_parser().parse_args(argv)
    key = os.environ.get(args.api_key_env, "")
    if not key:
        print(f"spendcheck: set {args.api_key_env} to the gateway's key", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {key}"}
    overrun_at = stopped_at = None
    with httpx.Client(base_url=args.gateway, headers=headers, timeout=60, follow_redirects=True) as client:
        for number in range(1, args.max_requests + 1):
            body = {"model": args.model, "max_tokens": 64,
                    "messages": [{"role": "user", "content": f"{uuid.uuid4()} hello"}]}  # fmt: skip
            resp = client.post("/v1/chat/completions", json=body)
            gauges = spend_gauges(client.get("/metrics/").text, args.scope)
            print(f"request {number}: HTTP {resp.status_code}, gauges {gauges}")
            if overrun_at is None and gauges.get("overrun") == 1:
                overrun_at = number
            if resp.status_code != 200:
                print(f"refused: {resp.text[:300]}")
                stopped_at = number if resp.status_code == 429 and "spend guard" in resp.text else None
                break
        body = {"model": "swarm-auto", "max_tokens": 16, "messages": [
            {"role": "user", "content": "Prove that the protocol is safe, step by step."}]}  # fmt: skip
        resp = client.post("/v1/chat/completions", json=body)
    stop_header = resp.headers.get("x-aiswarm-budget-stop", "")
    print(f"overrun signalled after request {overrun_at}; the paid group refused at request {stopped_at}")
    routed = resp.headers.get("x-aiswarm-route-model")
    print(f"swarm-auto with a complex prompt: HTTP {resp.status_code}, routed to {routed}, "
          f"x-aiswarm-budget-stop: {stop_header or '-'}")  # fmt: skip
    ok = (
        overrun_at is not None
        and stopped_at is not None
        and overrun_at <= stopped_at
        and resp.status_code == 200
        and args.model in stop_header
    )
    print("spendcheck: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
