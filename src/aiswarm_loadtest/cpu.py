"""Is the load generator itself the bottleneck? Sample this process's CPU during a run."""

from __future__ import annotations

import gevent
import psutil

CPU_LIMIT_PERCENT = 90.0


class CpuSampler:
    """Samples this process's CPU percent (of one core) every `interval_s` in a greenlet."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._greenlet: gevent.Greenlet | None = None
        self._process = psutil.Process()

    def start(self) -> None:
        self.samples = []
        self._process.cpu_percent(None)
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def _run(self) -> None:
        while True:
            gevent.sleep(self.interval_s)
            self.samples.append(self._process.cpu_percent(None))

    @property
    def average(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None

    def warning(self) -> str | None:
        """A warning when the average exceeded the limit, else None."""
        average = self.average
        if average is None or average <= CPU_LIMIT_PERCENT:
            return None
        return (
            f"the load generator averaged {average:.0f}% CPU (limit {CPU_LIMIT_PERCENT:.0f}%): it, not the "
            "target, may have limited the load; latencies include its queueing (see send lag). "
            "Run more processes (--processes N) or distribute workers."
        )
