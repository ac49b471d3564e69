"""Send schedules: when a request was *meant* to go out, so coordinated omission shows.

A closed-loop user that waits for each answer sends late when answers are slow; if latency
were measured from the late send, the slow period would hide. Both the closed loop with a
per-user rate and the open-loop rate user draw slots from a `FixedSchedule`: slot k is
start + k / rate, slots are never skipped or moved, and each request records its slot as
`t_intended`. A generator that falls behind therefore shows as t_start - t_intended > 0 and
as higher TTFT and E2E, not as fewer requests.
"""

from __future__ import annotations


class FixedSchedule:
    """Slots start, start + 1/rate, start + 2/rate, ... (epoch seconds)."""

    def __init__(self, rate: float, start: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate: expected requests per second > 0, got {rate}")
        self.interval = 1.0 / rate
        self._start = start
        self._index = 0

    def next_slot(self) -> float:
        """The next slot; computed from the start so rounding never accumulates."""
        slot = self._start + self._index * self.interval
        self._index += 1
        return slot


def step_users(elapsed_s: float, step_users: int, step_s: float, max_users: int, hold_s: float) -> int | None:
    """Users wanted `elapsed_s` into a step ramp; None when the ramp and the hold are over.

    Step k (k = 1, 2, ...) runs min(k * step_users, max_users) users for step_s seconds; once
    max_users is reached the ramp holds it for hold_s seconds and stops.
    """
    steps_to_top = -(-max_users // step_users)  # ceiling division
    ramp_s = steps_to_top * step_s
    if elapsed_s >= ramp_s + hold_s:
        return None
    if elapsed_s >= ramp_s:
        return max_users
    return min((int(elapsed_s // step_s) + 1) * step_users, max_users)
