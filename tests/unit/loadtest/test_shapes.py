"""The step ramp's schedule."""

from __future__ import annotations

import pytest

from aiswarm_loadtest.schedule import step_users


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [(0, 10), (29.9, 10), (30, 20), (119, 40), (120, 50), (149, 50), (150, 50), (209.9, 50), (210, None)],
)
def test_step_ramp(elapsed: float, expected: int | None) -> None:
    # 10 users per 30 s up to 50 (5 steps = 150 s), then hold 60 s
    assert step_users(elapsed, 10, 30, 50, 60) == expected


def test_last_step_is_capped() -> None:
    assert step_users(0, 40, 10, 50, 0) == 40
    assert step_users(10, 40, 10, 50, 0) == 50
    assert step_users(20, 40, 10, 50, 0) is None
