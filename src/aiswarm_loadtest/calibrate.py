"""Measure the harness's own error: Locust streaming against the calibrated reference backend.

Starts the reference backend in its own process with a known first-token delay, runs
`locust -f loadtests/chat_stream.py --headless` against it, and compares the TTFT the
harness measured with the TTFT the backend was told to produce. The difference is what
the harness (client, loopback network, scheduling) adds to every TTFT it reports.

    python -m aiswarm_loadtest.calibrate --users 50 --duration 30 --ttft-ms 50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from aiswarm_loadtest.metrics import percentile, summarize
from aiswarm_loadtest.options import non_negative_float, positive_int
from aiswarm_loadtest.refbackend import serve_in_process
from aiswarm_loadtest.runlog import load_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aiswarm_loadtest.calibrate", description=__doc__.split("\n", maxsplit=1)[0]
    )
    add = parser.add_argument
    add("--users", type=positive_int, default=50, help="concurrent streaming users (default 50)")
    add("--duration", type=positive_int, default=30, help="seconds of load (default 30)")
    add("--ttft-ms", type=non_negative_float, default=50.0, help="backend first-token delay (default 50)")
    add("--itl-ms", type=non_negative_float, default=10.0, help="backend inter-token delay (default 10)")
    add("--tokens", type=positive_int, default=64, help="output tokens per request (default 64)")
    add("--locustfile", default="loadtests/chat_stream.py", help="locustfile to run (default %(default)s)")
    add(
        "--tolerance-ms",
        type=non_negative_float,
        default=1.0,
        help="exit 1 when |median error| exceeds this (default 1)",
    )
    add("--run-dir", default="", help="keep the records here (default: a temporary directory)")
    add("--json", default="", help="also write the figures to this JSON file")
    return parser


def run_locust(args: argparse.Namespace, url: str, run_dir: Path) -> subprocess.CompletedProcess[str]:
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    command = [
        sys.executable, "-m", "locust", "-f", args.locustfile, "--headless",
        "-u", str(args.users), "-r", str(args.users), "-t", f"{args.duration}s", "--host", url,
        "--max-tokens", str(args.tokens), "--aiswarm-run-dir", str(run_dir), "--only-summary",
        "--slo-ttft-p95-ms", "60000", "--slo-e2e-p95-ms", "600000",
    ]  # fmt: skip
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=args.duration + 120, check=False
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    backend = ["--ttft-ms", str(args.ttft_ms), "--itl-ms", str(args.itl_ms), "--tokens", str(args.tokens)]
    with tempfile.TemporaryDirectory(prefix="aiswarm-calibrate-") as tmp:
        run_dir = Path(args.run_dir or tmp)
        with serve_in_process(backend) as url:
            result = run_locust(args, url, run_dir)
        records = load_run(run_dir)
    ok = [r for r in records if r.ok]
    if not ok:
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
        print("calibrate: no successful requests were recorded", file=sys.stderr)
        return 2
    summary = summarize(records)
    ttfts = [r.ttft * 1000 for r in ok if r.ttft is not None]
    p50, p95 = percentile(ttfts, 50), percentile(ttfts, 95)
    assert p50 is not None and p95 is not None
    error = p50 - args.ttft_ms
    itl = summary.itl.p50 * 1000 if summary.itl.p50 is not None else float("nan")
    print(f"reference backend: ttft {args.ttft_ms:g} ms, itl {args.itl_ms:g} ms, {args.tokens} tokens")
    print(f"locust: {args.users} users, {args.duration} s, {len(records)} requests, {len(ok)} ok")
    print(f"ttft configured {args.ttft_ms:.3f} ms | measured p50 {p50:.3f} ms, p95 {p95:.3f} ms")
    print(f"harness error (measured p50 - configured): {error:+.3f} ms (p95 {p95 - args.ttft_ms:+.3f} ms)")
    print(f"itl configured {args.itl_ms:.3f} ms | measured p50 {itl:.3f} ms")
    lag = summary.lag.p95 * 1000 if summary.lag.p95 is not None else 0.0
    print(
        f"send lag p95 {lag:.3f} ms; requests/s {summary.rps:.1f}; output tokens/s {summary.tokens_per_s:.0f}"
    )
    within = abs(error) <= args.tolerance_ms
    print(f"{'WITHIN' if within else 'OUTSIDE'} the {args.tolerance_ms:g} ms tolerance")
    if args.json:
        figures = {
            "users": args.users,
            "duration_s": args.duration,
            "requests": len(records),
            "ok": len(ok),
            "ttft_configured_ms": args.ttft_ms,
            "ttft_p50_ms": p50,
            "ttft_p95_ms": p95,
            "error_ms": error,
            "itl_configured_ms": args.itl_ms,
            "itl_p50_ms": itl,
            "send_lag_p95_ms": lag,
            "rps": summary.rps,
            "tolerance_ms": args.tolerance_ms,
            "within": within,
            "load_average": os.getloadavg(),
        }
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
