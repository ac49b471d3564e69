"""The rollback ledger: recorded before injecting, undone on every kind of exit, never twice."""

from __future__ import annotations

import os
import signal

import pytest

from aiswarm_loadtest.chaos.faults import FaultCommandError, FaultPlan, Step
from aiswarm_loadtest.chaos.ledger import RollbackLedger

from .fakes import FakeExecutor


def plan(fid: str = "f1") -> FaultPlan:
    return FaultPlan(fid, "stop_service", "n1", (Step(("inject", fid)),), (Step(("rollback", fid)),))


def quiet(_message: str) -> None:
    return None


def test_the_fault_is_recorded_before_it_is_injected() -> None:
    ledger: RollbackLedger
    seen: list[list[str]] = []

    class Watching(FakeExecutor):
        def run(self, step):
            seen.append(ledger.open_faults)
            return super().run(step)

    ledger = RollbackLedger(Watching(), log=quiet)
    ledger.inject(plan())
    assert seen == [["f1"]]


def test_a_failed_injection_is_rolled_back_at_once() -> None:
    executor = FakeExecutor(fail_on=lambda step: step.argv[0] == "inject")
    ledger = RollbackLedger(executor, log=quiet)
    with pytest.raises(FaultCommandError):
        ledger.inject(plan())
    assert executor.ran == ["inject f1", "rollback f1"]
    assert ledger.open_faults == []


def test_rollback_is_idempotent_and_newest_first() -> None:
    executor = FakeExecutor()
    ledger = RollbackLedger(executor, log=quiet)
    ledger.inject(plan("a"))
    ledger.inject(plan("b"))
    assert ledger.rollback_all() == []
    assert ledger.rollback_all() == []
    assert ledger.rollback("a") == []
    assert executor.ran == ["inject a", "inject b", "rollback b", "rollback a"]
    ledger.inject(plan("c"))
    with pytest.raises(ValueError, match="already injected"):
        ledger.inject(plan("c"))


def test_a_failed_rollback_stays_open_and_is_retried() -> None:
    attempts = {"n": 0}

    def flaky(step: Step) -> bool:
        if step.argv[0] == "rollback":
            attempts["n"] += 1
            return attempts["n"] == 1
        return False

    executor = FakeExecutor(fail_on=flaky)
    ledger = RollbackLedger(executor, log=quiet)
    ledger.inject(plan())
    assert ledger.rollback_all() == ["rollback f1: exit 1: boom"]
    assert ledger.open_faults == ["f1"]
    assert ledger.rollback_all() == []
    assert ledger.open_faults == []


def test_armed_rolls_back_on_normal_exit_and_on_exceptions() -> None:
    executor = FakeExecutor()
    ledger = RollbackLedger(executor, log=quiet)
    with ledger.armed():
        ledger.inject(plan("normal"))
    with pytest.raises(RuntimeError, match="mid-fault"), ledger.armed():
        ledger.inject(plan("boom"))
        raise RuntimeError("mid-fault")
    assert executor.ran == ["inject normal", "rollback normal", "inject boom", "rollback boom"]


@pytest.mark.parametrize(
    ("signum", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, SystemExit)]
)
def test_armed_rolls_back_on_a_real_signal_and_restores_handlers(signum: int, raised: type) -> None:
    executor = FakeExecutor()
    ledger = RollbackLedger(executor, log=quiet)
    before = signal.getsignal(signum)
    with pytest.raises(raised) as caught, ledger.armed():
        ledger.inject(plan())
        os.kill(os.getpid(), signum)
        pytest.fail("the signal should have interrupted the block")
    assert executor.ran == ["inject f1", "rollback f1"]
    assert signal.getsignal(signum) is before
    if raised is SystemExit:
        assert caught.value.code == 128 + signal.SIGTERM


def test_armed_registers_an_atexit_rollback(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: list = []
    monkeypatch.setattr("atexit.register", registered.append)
    monkeypatch.setattr("atexit.unregister", registered.remove)
    ledger = RollbackLedger(FakeExecutor(), log=quiet)
    with ledger.armed():
        assert registered == [ledger.rollback_all]
    assert registered == []
