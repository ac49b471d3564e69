"""The rollback ledger: every fault is written down before it is injected and undone on any exit.

`RollbackLedger.armed()` is a context manager that rolls back whatever is still open when the
block ends (normally or by an exception), on SIGINT/SIGTERM (Ctrl-C) and, as a last resort,
at interpreter exit. A plan whose rollback fails stays open, so a later call retries it; a plan
rolled back successfully is never rolled back twice.
"""

from __future__ import annotations

import atexit
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from aiswarm_loadtest.chaos.faults import Executor, FaultPlan


def _stderr(message: str) -> None:
    print(f"chaos: {message}", file=sys.stderr, flush=True)


class RollbackLedger:
    def __init__(
        self,
        executor: Executor,
        *,
        log: Callable[[str], None] = _stderr,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.executor = executor
        self._log = log
        self._clock = clock
        self._open: dict[str, FaultPlan] = {}
        self._rolling_back = False
        self.events: list[dict] = []  # injections and rollbacks with their times, for the report

    @property
    def open_faults(self) -> list[str]:
        return list(self._open)

    def inject(self, plan: FaultPlan) -> float:
        """Record the plan, then run its inject steps; a failed injection is rolled back at once."""
        if plan.fault_id in self._open:
            raise ValueError(f"{plan.fault_id}: already injected and not rolled back")
        self._open[plan.fault_id] = plan
        started = self._clock()
        self._log(f"inject {plan.fault_id}")
        try:
            for step in plan.inject:
                self.executor.run(step)
        except BaseException as exc:
            self.events.append(
                {"action": "inject", "fault_id": plan.fault_id, "t": started, "error": str(exc)}
            )
            self.rollback(plan.fault_id)
            raise
        self.events.append({"action": "inject", "fault_id": plan.fault_id, "t": started, "error": ""})
        return started

    def rollback(self, fault_id: str) -> list[str]:
        """Undo one fault; returns the errors (the plan stays open if there were any)."""
        plan = self._open.get(fault_id)
        if plan is None:
            return []
        errors: list[str] = []
        started = self._clock()
        self._log(f"roll back {fault_id}")
        for step in plan.rollback:
            try:
                self.executor.run(step)
            except Exception as exc:  # keep going: the other steps may still heal the node
                errors.append(str(exc))
                self._log(f"rollback step failed: {exc}")
        if not errors:
            del self._open[fault_id]
        self.events.append(
            {"action": "rollback", "fault_id": fault_id, "t": started, "error": "; ".join(errors)}
        )
        return errors

    def rollback_all(self) -> list[str]:
        """Undo every open fault, newest first, once each; returns all errors."""
        if self._rolling_back:
            return []
        self._rolling_back = True
        try:
            errors: list[str] = []
            for fault_id in reversed(list(self._open)):
                errors.extend(self.rollback(fault_id))
            return errors
        finally:
            self._rolling_back = False

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._rolling_back:
            self._log("rollback in progress; let it finish")
            return
        self._log(f"{signal.Signals(signum).name}: rolling back open faults")
        self.rollback_all()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    @contextmanager
    def armed(self) -> Iterator[RollbackLedger]:
        """Roll back on block exit, exceptions, SIGINT/SIGTERM and interpreter exit."""
        previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self._on_signal)
        atexit.register(self.rollback_all)
        try:
            yield self
        finally:
            try:
                errors = self.rollback_all()
                if errors:
                    self._log(f"still open after rollback: {', '.join(self.open_faults)}")
            finally:
                atexit.unregister(self.rollback_all)
                for signum, handler in previous.items():
                    signal.signal(signum, handler)  # type: ignore[arg-type]
