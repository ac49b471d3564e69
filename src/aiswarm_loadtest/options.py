"""The harness's command-line options, registered on Locust's parser, and their validated form.

Every option also reads an environment variable (`LOCUST_` + the option name in capitals,
except the API key, which reads `AISWARM_API_KEY`) and shows in the web UI. Malformed values
fail in the parser with the option's name: `argument --max-tokens: invalid positive_int value`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPT_SIZES = ("small", "medium", "large")


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def positive_float(text: str) -> float:
    """A number > 0."""
    value = float(text)
    if math.isnan(value) or value <= 0:
        raise ValueError(text)
    return value


def non_negative_float(text: str) -> float:
    """A number >= 0."""
    value = float(text)
    if math.isnan(value) or value < 0:
        raise ValueError(text)
    return value


def fraction(text: str) -> float:
    """A number within 0..1."""
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError(text)
    return value


def default_run_dir() -> str:
    """loadtests/results/<UTC timestamp>, relative to the working directory."""
    return str(Path("loadtests/results") / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"))


# (flag, type, default, help); env var LOCUST_<FLAG>; is_secret only for the key
_OPTIONS: tuple[tuple[str, Any, Any, str], ...] = (
    ("--model", str, "chat", "model (gateway model group) the chat users ask for"),
    ("--embedding-model", str, "embeddings", "model the embeddings user asks for"),
    ("--max-tokens", positive_int, 64, "max_tokens of each chat request"),
    ("--prompt-size", str, "small", "prompt set: small, medium or large"),
    ("--long-context-tokens", positive_int, 8000, "approximate prompt tokens of the long-context user"),
    ("--stall-threshold-s", positive_float, 5.0, "a gap between content chunks longer than this is a stall"),
    ("--request-timeout-s", positive_float, 60.0, "give up on a request (connect or first token) after this"),
    ("--per-user-rps", non_negative_float, 0.0, "closed loop: each user's fixed schedule, 0 = back to back"),
    (
        "--failure-pause-s",
        non_negative_float,
        0.1,
        "closed loop: pause after a failed request, so a refused connection is not retried in a "
        "tight loop (0 = none)",
    ),
    ("--target-rps", positive_float, 100.0, "open loop (ChatRateUser): total requests per second"),
    ("--max-inflight", positive_int, 1000, "open loop: requests in flight per user before sends queue"),
    ("--aiswarm-run-dir", str, "", "directory for requests*.jsonl (default loadtests/results/<UTC time>)"),
    ("--slo-ttft-p95-ms", positive_float, 100.0, "gate: p95 time to first token at most this (ms)"),
    ("--slo-e2e-p95-ms", positive_float, 5000.0, "gate: p95 end-to-end time at most this (ms)"),
    ("--slo-max-error-rate", fraction, 0.01, "gate: failed fraction at most this"),
    ("--slo-min-rps", non_negative_float, 0.0, "gate: requests per second at least this (0 = off)"),
    ("--slo-max-empty-share", fraction, 0.0, "gate: share of successful answers without text at most this"),
    (
        "--downtime-slow-s",
        positive_float,
        5.0,
        "downtime: a second in which no answer began within this many seconds counts as down",
    ),
    ("--ramp-step-users", positive_int, 10, "StepRampShape: users added per step"),
    ("--ramp-step-seconds", positive_float, 30.0, "StepRampShape: seconds per step"),
    ("--ramp-max-users", positive_int, 50, "StepRampShape: users at the top of the ramp"),
    ("--ramp-hold-seconds", non_negative_float, 60.0, "StepRampShape: seconds held at the top"),
)


def add_arguments(parser: Any) -> None:
    """Register the options on Locust's parser (a configargparse parser with `env_var`).

    On the parser itself, not an argument group: only Locust's parser takes `is_secret`
    and puts the options in the web UI.
    """
    parser.add_argument(
        "--api-key",
        type=str,
        default="",
        env_var="AISWARM_API_KEY",
        is_secret=True,
        help="gateway key, sent as 'Authorization: Bearer <key>' (env AISWARM_API_KEY)",
    )
    for flag, kind, default, text in _OPTIONS:
        env = "LOCUST_" + flag.removeprefix("--").replace("-", "_").upper()
        extra = {"choices": PROMPT_SIZES} if flag == "--prompt-size" else {}
        parser.add_argument(
            flag, type=kind, default=default, env_var=env, help=f"{text} (default {default})", **extra
        )
    parser.add_argument(
        "--skip-probe",
        action="store_true",
        default=False,
        env_var="LOCUST_SKIP_PROBE",
        help="do not probe GET /v1/models before the test starts",
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """The options one user needs, read once from `environment.parsed_options`."""

    api_key: str
    model: str
    embedding_model: str
    max_tokens: int
    prompt_size: str
    long_context_tokens: int
    stall_threshold_s: float
    request_timeout_s: float
    per_user_rps: float
    failure_pause_s: float
    target_rps: float
    max_inflight: int
    run_dir: Path

    @classmethod
    def from_options(cls, options: argparse.Namespace | None) -> Settings:
        """Build from parsed options; None (e.g. run_single_user) gives the defaults."""
        get = (lambda name, default: getattr(options, name, default)) if options else (lambda _n, d: d)
        defaults = {flag.removeprefix("--").replace("-", "_"): default for flag, _k, default, _h in _OPTIONS}
        values = {name: get(name, default) for name, default in defaults.items()}
        return cls(
            api_key=get("api_key", ""),
            model=values["model"],
            embedding_model=values["embedding_model"],
            max_tokens=values["max_tokens"],
            prompt_size=values["prompt_size"],
            long_context_tokens=values["long_context_tokens"],
            stall_threshold_s=values["stall_threshold_s"],
            request_timeout_s=values["request_timeout_s"],
            per_user_rps=values["per_user_rps"],
            failure_pause_s=values["failure_pause_s"],
            target_rps=values["target_rps"],
            max_inflight=values["max_inflight"],
            run_dir=Path(values["aiswarm_run_dir"] or default_run_dir()),
        )


def main(argv: list[str] | None = None) -> int:
    """`python -m aiswarm_loadtest.options`: print the harness's own options.

    `locust -f loadtests/... --help` prints Locust's help before it imports a locustfile
    (locust.argument_parser.parse_locustfile_option), so options added through
    `init_command_line_parser` never show there; they do show in the web UI and work on the
    command line, in a config file and as environment variables.
    """
    from locust.argument_parser import LocustArgumentParser  # pylint: disable=import-outside-toplevel

    parser = LocustArgumentParser(
        prog="locust -f loadtests/<file>.py",
        description="Options the aiswarm locustfiles add to Locust's own (see `locust --help`).",
    )
    add_arguments(parser)
    parser.parse_args(argv if argv is not None else ["--help"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
