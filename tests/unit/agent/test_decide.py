"""The agent's pure decisions: what a unit's state means, the restart budget, the thermal hysteresis."""

from __future__ import annotations

import pytest

from aiswarm.agent.decide import (
    BUDGET_EXHAUSTED,
    RESTART,
    Condition,
    DrainSource,
    DrainState,
    GpuThermal,
    RestartPolicy,
    RestartTrack,
    ThermalPolicy,
    UnitState,
    classify,
)

NOW = 5000.0
GRACE = 600.0


@pytest.mark.parametrize(
    ("unit", "healthy", "healthy_start", "expected"),
    [
        (UnitState("loaded", "active", "running", "success", 100.0), True, None, Condition.HEALTHY),
        (UnitState("loaded", "active", "running", "success", 100.0), None, None, Condition.HEALTHY),  # no URL
        # Started 10 s ago and never answered since: a model still loading.
        (UnitState("loaded", "active", "running", "success", NOW - 10), False, None, Condition.STARTING),
        # Answered once since this start, then stopped answering: unhealthy at once.
        (UnitState("loaded", "active", "running", "success", NOW - 10), False, NOW - 10, Condition.UNHEALTHY),
        # Never answered, and the grace is over.
        (UnitState("loaded", "active", "running", "success", NOW - GRACE), False, None, Condition.UNHEALTHY),
        # systemctl stop: deliberate.
        (UnitState("loaded", "inactive", "dead", "success", 100.0), None, None, Condition.STOPPED),
        # kill -9 of a unit with Restart=no.
        (UnitState("loaded", "failed", "failed", "signal", 100.0), None, None, Condition.CRASHED),
        (UnitState("loaded", "failed", "failed", "exit-code", 100.0), None, None, Condition.CRASHED),
        # Inactive after a crash once its failed state was reset: still not a deliberate stop.
        (UnitState("loaded", "inactive", "dead", "core-dump", 100.0), None, None, Condition.CRASHED),
        # systemd is restarting it itself (Restart=always) or starting or stopping it.
        (
            UnitState("loaded", "activating", "auto-restart", "signal", 100.0),
            None,
            None,
            Condition.TRANSITION,
        ),
        (
            UnitState("loaded", "deactivating", "stop-sigterm", "success", 100.0),
            None,
            None,
            Condition.TRANSITION,
        ),
        (UnitState("not-found", "inactive", "dead", "success", None), None, None, Condition.MISSING),
        (UnitState("masked", "inactive", "dead", "success", None), None, None, Condition.MISSING),
    ],
)
def test_classify(
    unit: UnitState, healthy: bool | None, healthy_start: float | None, expected: Condition
) -> None:
    assert classify(unit, healthy, NOW, GRACE, healthy_start) is expected


ACTIVE = UnitState("loaded", "active", "running", "success", 100.0)
POLICY = RestartPolicy(failure_threshold=3, max_per_hour=3, backoff_s=30.0)


def run(
    track: RestartTrack, times: list[float], condition: Condition = Condition.UNHEALTHY
) -> dict[float, str]:
    """Checks at `times`, each with `condition`: {time: action} for the checks that acted."""
    done = {}
    for t in times:
        action = track.decide("svc", condition, t, True, ACTIVE)
        if action is not None:
            done[t] = action.action
    return done


def test_n_failures_restart_then_backoff_doubles_then_the_budget_is_exhausted_once() -> None:
    track = RestartTrack(POLICY)
    done = run(track, [t * 5.0 for t in range(0, 60)])  # checks every 5 s for 5 minutes
    # 3rd failure (t=10) restarts; the 2nd restart waits 30 s (t=40, its 3rd failure since is at t=25);
    # the 3rd waits 60 s (t=100); then 3 restarts in the hour: exhausted once, then silence.
    assert done == {10.0: RESTART, 40.0: RESTART, 100.0: RESTART, 115.0: BUDGET_EXHAUSTED}
    assert track.exhausted
    assert track.failures > POLICY.failure_threshold  # still counted for the metric


def test_the_budget_window_slides_and_the_backoff_keeps_growing_until_a_check_passes() -> None:
    track = RestartTrack(POLICY)
    run(track, [t * 5.0 for t in range(0, 60)])
    # The first restart (t=10) leaves the hour at t=3610: one more restart, no sooner.
    assert run(track, [3605.0]) == {}
    assert run(track, [3610.0]) == {3610.0: RESTART}
    assert not track.exhausted
    assert track.delay_s() == 30.0 * 2**3  # the 5th restart would wait 240 s after the 4th
    # The window is full again (t=40, 100, 3610): exhausted at the next threshold, once.
    assert run(track, [3615.0, 3620.0, 3625.0, 3630.0]) == {3625.0: BUDGET_EXHAUSTED}
    # One passing check resets the failures and the back-off, not the hour's restarts.
    run(track, [3700.0], Condition.HEALTHY)
    assert (track.failures, track.streak, track.exhausted, track.delay_s()) == (0, 0, False, 0.0)
    assert len(track.restarts) == 3


def test_a_service_that_recovers_between_failures_is_still_capped_per_hour() -> None:
    track = RestartTrack(POLICY)
    done: dict[float, str] = {}
    for start in (0.0, 200.0, 400.0, 600.0):
        done |= run(track, [start, start + 5, start + 10])
        run(track, [start + 15], Condition.HEALTHY)  # the restart helped, for a while
    assert done == {10.0: RESTART, 210.0: RESTART, 410.0: RESTART, 610.0: BUDGET_EXHAUSTED}


def test_a_crashed_unit_counts_like_a_failed_check_and_restart_false_only_watches() -> None:
    track = RestartTrack(POLICY)
    assert run(track, [0.0, 5.0, 10.0], Condition.CRASHED) == {10.0: RESTART}
    watcher = RestartTrack(POLICY)
    for t in (0.0, 5.0, 10.0, 15.0):
        assert watcher.decide("svc", Condition.CRASHED, t, False, ACTIVE) is None
    assert watcher.failures == 4


@pytest.mark.parametrize(
    "condition",
    [Condition.STOPPED, Condition.STARTING, Condition.TRANSITION, Condition.MISSING, Condition.UNKNOWN],
)
def test_no_restart_for_a_stopped_starting_transitional_or_missing_unit(condition: Condition) -> None:
    track = RestartTrack(POLICY)
    assert run(track, [t * 5.0 for t in range(20)], condition) == {}
    assert track.failures == 0


def test_a_deliberate_stop_clears_the_failures_and_the_exhausted_mark() -> None:
    track = RestartTrack(POLICY)
    run(track, [t * 5.0 for t in range(0, 60)])
    assert track.exhausted
    run(track, [400.0], Condition.STOPPED)
    assert (track.failures, track.exhausted) == (0, False)


def test_the_restart_action_says_why() -> None:
    track = RestartTrack(POLICY)
    failed = UnitState("loaded", "failed", "failed", "signal", 100.0)
    for t in (0.0, 5.0):
        assert track.decide("dummy", Condition.CRASHED, t, True, failed) is None
    action = track.decide("dummy", Condition.CRASHED, 10.0, True, failed)
    assert action is not None
    assert (action.service, action.action, action.reason) == ("dummy", RESTART, "crashed")
    assert action.detail == (
        "unit failed (result signal) for 3 checks in a row; restart 1 of at most 3 an hour"
    )


THERMAL = ThermalPolicy(limit_c=83.0, resume_c=75.0, hold_s=60.0)


def test_thermal_hysteresis_needs_the_hold_below_resume_without_a_break() -> None:
    gpu = GpuThermal(THERMAL)
    assert gpu.step(83.0, 0.0) is None  # at the limit is not above it
    assert gpu.step(83.5, 5.0) is True
    assert gpu.step(None, 10.0) is None and gpu.hot  # a reading NVML could not give changes nothing
    assert gpu.step(74.0, 15.0) is None  # below resume: the hold starts
    assert gpu.step(75.0, 70.0) is None and gpu.cool_since is None  # back at resume: the hold restarts
    assert gpu.step(74.9, 75.0) is None
    assert gpu.step(60.0, 134.0) is None
    assert gpu.step(60.0, 135.0) is False and not gpu.hot


@pytest.mark.parametrize("seed", range(5))
def test_temperatures_between_resume_and_limit_never_flap(seed: int) -> None:
    """Hot, then any number of readings between 75 and 90 °C (above and below the limit): no change."""
    gpu = GpuThermal(THERMAL)
    assert gpu.step(90.0, 0.0) is True
    temperatures = [75 + ((seed * 7 + i * 13) % 16) for i in range(200)]  # 75..90, a fixed jumble
    assert all(gpu.step(float(t), 5.0 * (i + 1)) is None for i, t in enumerate(temperatures))
    assert gpu.hot


def test_a_drain_lasts_while_any_reason_holds() -> None:
    state = DrainState()
    assert state.add("gpu0", DrainSource("GPU 0 at 86 °C", 1.0)) is True
    assert state.add("manual", DrainSource("manual: maintenance", 2.0)) is False
    assert state.remove("gpu0") is False and state.draining
    assert state.remove("gpu0") is False  # not a reason any more
    assert state.remove("manual") is True and not state.draining
