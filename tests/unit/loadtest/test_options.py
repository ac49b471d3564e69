"""Option value parsers: the bounds, and NaN rejected rather than slipping past a comparison."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aiswarm_loadtest.options import fraction, non_negative_float, positive_float, positive_int


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [
        (positive_int, "1", 1),
        (positive_float, "0.001", 0.001),
        (positive_float, "inf", float("inf")),
        (non_negative_float, "0", 0.0),
        (non_negative_float, "2.5", 2.5),
        (fraction, "0", 0.0),
        (fraction, "1", 1.0),
    ],
)
def test_accepted(parse, text: str, value: float) -> None:
    assert parse(text) == value


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (positive_int, "0"),
        (positive_int, "1.5"),
        (positive_float, "0"),
        (positive_float, "-1"),
        (positive_float, "nan"),
        (non_negative_float, "-0.1"),
        (non_negative_float, "nan"),
        (non_negative_float, "-inf"),
        (fraction, "1.01"),
        (fraction, "nan"),
        (positive_float, "ten"),
    ],
)
def test_rejected_with_the_text(parse, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        parse(text)


def test_the_options_help_lists_every_harness_option() -> None:
    # In a child process: importing locust monkey-patches the interpreter (gevent).
    done = subprocess.run(
        [sys.executable, "-m", "aiswarm_loadtest.options"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    for flag in ("--api-key", "--max-tokens", "--slo-ttft-p95-ms", "--slo-min-rps", "--target-rps"):
        assert flag in done.stdout
