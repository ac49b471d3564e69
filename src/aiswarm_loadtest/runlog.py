"""Where a run's records go: one JSON-lines file per generator process, merged on read.

A standalone Locust process writes `<run dir>/requests.jsonl`; each process of a distributed
run (master and workers share the run directory, e.g. over a shared mount) writes
`requests-<pid>.jsonl`, so no two processes append to one file. `load_run` merges them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from aiswarm_loadtest.records import RequestRecord, read_records


class RecordSink:
    """Append records of this process to its own file, opened on the first write."""

    def __init__(self, run_dir: Path, per_process: bool) -> None:
        name = f"requests-{os.getpid()}.jsonl" if per_process else "requests.jsonl"
        self.path = run_dir / name
        self._out: TextIO | None = None

    def write(self, record: RequestRecord) -> None:
        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.path.open("a", encoding="utf-8", buffering=1)
        self._out.write(record.to_json() + "\n")

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def record_files(run_dir: Path) -> list[Path]:
    """The record files of a run directory, in name order."""
    return sorted(run_dir.glob("requests*.jsonl"))


def load_run(run_dir: Path, since: float = 0.0) -> list[RequestRecord]:
    """All records of a run directory intended at or after `since` (epoch seconds)."""
    return [record for record in _iter_run(run_dir) if record.t_intended >= since]


def _iter_run(run_dir: Path) -> Iterator[RequestRecord]:
    for path in record_files(run_dir):
        yield from read_records(path)
