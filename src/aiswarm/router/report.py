"""Cost of a gateway workload against an all-premium baseline.

    python -m aiswarm.router.report --records /var/lib/litellm/router-decisions.jsonl \\
        --config /etc/aiswarm/litellm/config.yaml --baseline-model hermes-3-405b
    python -m aiswarm.router.report --spend-logs http://10.0.0.1:4000 \\
        --config /etc/aiswarm/litellm/config.yaml --baseline-model hermes-3-405b

Records come from the hook's decisions log (JSONL) or from LiteLLM's ``GET /spend/logs`` (needs
the gateway's database; the master key is read from ``$LITELLM_MASTER_KEY`` or ``--key-env``).
Prices per token come from the ``model_info`` of the gateway's config.yaml. A call's actual cost
is its model group's price in the config times its tokens (a group without a price, such as
the local engines and the free tiers, costs 0); ``--recorded-spend`` takes the spend LiteLLM
recorded instead, which prices free tiers at the provider's paid API rate. The baseline prices
every call's tokens at the baseline model's price.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiswarm.router.records import METADATA_KEY, TAG_PREFIX, CallRecord


class ReportError(ValueError):
    """Unusable input; the message names the file, field or option."""


@dataclass(frozen=True)
class Price:
    input: float = 0.0
    output: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input + completion_tokens * self.output


@dataclass
class Line:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    actual: float = 0.0
    baseline: float = 0.0


@dataclass
class Report:
    baseline_model: str
    by_tier: dict[str, Line] = field(default_factory=dict)
    total: Line = field(default_factory=Line)

    @property
    def savings(self) -> float:
        """Fraction of the baseline saved (0.8 = 80 % cheaper); 0 when the baseline is 0."""
        return 1 - self.total.actual / self.total.baseline if self.total.baseline else 0.0


def prices_from_config(config: Mapping[str, Any]) -> dict[str, Price]:
    """Price per token of each model group, from ``model_list[].model_info`` of a LiteLLM config."""
    prices: dict[str, Price] = {}
    for i, deployment in enumerate(config.get("model_list") or []):
        if not isinstance(deployment, Mapping) or not isinstance(deployment.get("model_name"), str):
            raise ReportError(f"model_list[{i}]: expected a mapping with model_name")
        info = deployment.get("model_info") or {}
        values = [info.get("input_cost_per_token", 0.0), info.get("output_cost_per_token", 0.0)]
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
            raise ReportError(f"model_list[{i}].model_info: costs per token must be numbers, got {values}")
        prices.setdefault(deployment["model_name"], Price(float(values[0]), float(values[1])))
    return prices


def build_report(
    records: Iterable[CallRecord], prices: Mapping[str, Price], baseline_model: str, *, recorded: bool = False
) -> Report:
    """Sum actual and all-baseline costs per tier and in total.

    A call to a group the config lists is priced from the config (the catalog's prices, the
    spend guard's too): a free tier costs 0 even though LiteLLM's cost map prices its model at
    the provider's paid API rate (gemini-2.5-flash: LiteLLM recorded $0.018 for 424 calls of
    the lab's batch tier that cost nothing on Gemini's free tier). With `recorded`, the spend
    LiteLLM recorded wins wherever there is one. A group the config does not list costs what
    LiteLLM recorded, else 0."""
    if baseline_model not in prices:
        raise ReportError(
            f"--baseline-model: '{baseline_model}' has no price in the config; known: {sorted(prices)}"
        )
    baseline_price = prices[baseline_model]
    report = Report(baseline_model)
    for record in records:
        listed = record.model_group in prices
        if record.spend is not None and (recorded or not listed):
            actual = record.spend
        else:
            actual = prices.get(record.model_group, Price()).cost(
                record.prompt_tokens, record.completion_tokens
            )
        baseline = baseline_price.cost(record.prompt_tokens, record.completion_tokens)
        for line in (report.by_tier.setdefault(record.tier, Line()), report.total):
            line.requests += 1
            line.prompt_tokens += record.prompt_tokens
            line.completion_tokens += record.completion_tokens
            line.actual += actual
            line.baseline += baseline
    return report


def _record(row: Any, where: str) -> CallRecord:
    if not isinstance(row, Mapping):
        raise ReportError(f"{where}: expected an object, got {type(row).__name__}")
    for key in ("prompt_tokens", "completion_tokens"):
        value = row.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ReportError(f"{where}.{key}: expected an integer >= 0, got {value!r}")
    spend = row.get("spend")
    if spend is not None and (isinstance(spend, bool) or not isinstance(spend, int | float)):
        raise ReportError(f"{where}.spend: expected a number, got {spend!r}")
    return CallRecord(
        request_id=str(row.get("request_id", "")),
        model_group=str(row.get("model_group") or row.get("model") or ""),
        tier=str(row.get("tier", "passthrough")),
        reason=str(row.get("reason", "")),
        prompt_tokens=row.get("prompt_tokens", 0),
        completion_tokens=row.get("completion_tokens", 0),
        spend=None if spend is None else float(spend),
    )


def records_from_jsonl(lines: Iterable[str], source: str) -> list[CallRecord]:
    """Parse the hook's decisions log; blank lines are skipped, a bad line names its number."""
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{source}:{number}: not JSON ({exc.msg})") from exc
        records.append(_record(row, f"{source}:{number}"))
    return records


def _tier_of_spend_row(row: Mapping[str, Any]) -> str:
    metadata = row.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError:
            metadata = {}
    if isinstance(metadata, Mapping):
        spend_meta = metadata.get("spend_logs_metadata")
        route = spend_meta.get(METADATA_KEY) if isinstance(spend_meta, Mapping) else None
        if isinstance(route, Mapping) and isinstance(route.get("tier"), str):
            return route["tier"]
    for tag in row.get("request_tags") or []:
        if isinstance(tag, str) and tag.startswith(TAG_PREFIX):
            return tag[len(TAG_PREFIX) :]
    return "passthrough"


def records_from_spend_logs(rows: Any) -> list[CallRecord]:
    """Turn LiteLLM's ``/spend/logs`` rows into records (tier from spend_logs_metadata or the tag)."""
    if not isinstance(rows, list):
        raise ReportError(f"/spend/logs: expected a JSON list, got {type(rows).__name__}")
    records = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ReportError(f"/spend/logs[{i}]: expected an object")
        records.append(_record({**row, "tier": _tier_of_spend_row(row)}, f"/spend/logs[{i}]"))
    return records


def fetch_spend_logs(base_url: str, key: str, timeout: float = 30) -> Any:
    request = urllib.request.Request(
        base_url.rstrip("/") + "/spend/logs", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def render(report: Report) -> str:
    header = (
        f"{'tier':<12} {'requests':>8} {'prompt':>10} {'completion':>10} {'cost $':>12} {'baseline $':>12}"
    )
    rows = [header, "-" * len(header)]
    for name, line in [*sorted(report.by_tier.items()), ("total", report.total)]:
        rows.append(
            f"{name:<12} {line.requests:>8} {line.prompt_tokens:>10} {line.completion_tokens:>10} "
            f"{line.actual:>12.6f} {line.baseline:>12.6f}"
        )
    rows.append(f"all-premium baseline: every call priced as {report.baseline_model}")
    rows.append(f"savings against the baseline: {report.savings * 100:.1f} %")
    return "\n".join(rows)


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m aiswarm.router.report",
        description="Cost of a gateway workload against an all-premium baseline.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--records", type=Path, help="the hook's decisions log (JSONL)")
    source.add_argument(
        "--spend-logs", metavar="GATEWAY_URL", help="read GET <url>/spend/logs (needs the DB)"
    )
    parser.add_argument("--config", type=Path, required=True, help="the gateway's config.yaml (prices)")
    parser.add_argument("--baseline-model", required=True, help="premium model group every call is priced at")
    parser.add_argument(
        "--recorded-spend",
        action="store_true",
        help="price calls at the spend LiteLLM recorded, not at the config's prices "
        "(free tiers at paid API rates)",
    )
    parser.add_argument("--key-env", default="LITELLM_MASTER_KEY", help="variable holding the master key")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    try:
        try:
            config = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ReportError(f"--config {args.config}: {exc.strerror}") from exc
        prices = prices_from_config(config)
        if args.records is not None:
            try:
                lines = args.records.read_text(encoding="utf-8").splitlines()
                records = records_from_jsonl(lines, str(args.records))
            except OSError as exc:
                raise ReportError(f"--records {args.records}: {exc.strerror}") from exc
        else:
            key = os.environ.get(args.key_env)
            if not key:
                raise ReportError(f"--key-env: ${args.key_env} is empty; export the gateway's master key")
            records = records_from_spend_logs(fetch_spend_logs(args.spend_logs, key))
        report = build_report(records, prices, args.baseline_model, recorded=args.recorded_spend)
    except (ReportError, OSError) as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {
                    "baseline_model": report.baseline_model,
                    "savings": report.savings,
                    "total": vars(report.total),
                    "by_tier": {k: vars(v) for k, v in report.by_tier.items()},
                },
                sort_keys=True,
            )
        )
    else:
        print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
