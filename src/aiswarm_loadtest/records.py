"""One record per request, the raw material of every metric, gate and report.

Load users append `RequestRecord`s as JSON lines to a run's `requests.jsonl`; the SLO gates,
the chaos runner and the reports read them back. Times are wall-clock epoch seconds
(`time.time()`), durations are seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

FAILURE_CLASSES = (
    "error_before_first_token",  # HTTP error, refused or timed out before any content arrived
    "cut_without_done",  # content arrived, then the stream ended without [DONE]
    "inband_error",  # an error event arrived inside the stream after content
    "stall",  # the gap between two chunks exceeded the stall threshold
    "malformed",  # an event that is not valid SSE/JSON of the expected shape
)


@dataclass(slots=True)
class RequestRecord:
    """What happened to one request.

    `t_intended` is when the schedule wanted the request sent; `t_start` when it was sent.
    The difference is queueing inside the generator (coordinated omission made visible).
    """

    kind: str  # which user sent it: chat_stream, chat, embeddings, long_context
    t_intended: float
    t_start: float
    t_end: float
    ok: bool
    status: int = 0  # HTTP status, 0 when no response arrived
    t_first_token: float | None = None  # first content token (streams only)
    output_tokens: int = 0
    failure_class: str | None = None  # one of FAILURE_CLASSES when ok is False
    backend: str = ""  # which deployment served it (gateway headers, else response model)
    model: str = ""  # the `model` field of the response
    error: str = ""  # short reason, never a secret
    chunk_gaps: list[float] = field(default_factory=list)  # seconds between content chunks
    empty: bool = False  # a success that carried no text: no content chunk, or an empty message

    def __post_init__(self) -> None:
        if self.failure_class is not None and self.failure_class not in FAILURE_CLASSES:
            raise ValueError(
                f"failure_class: expected one of {', '.join(FAILURE_CLASSES)}, got {self.failure_class!r}"
            )
        if self.empty and not self.ok:
            raise ValueError("empty: only a successful request can be empty")

    @property
    def ttft(self) -> float | None:
        """Time to first token, measured from the intended send time."""
        return None if self.t_first_token is None else self.t_first_token - self.t_intended

    @property
    def e2e(self) -> float:
        """End-to-end time, measured from the intended send time."""
        return self.t_end - self.t_intended

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict) -> RequestRecord:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"request record: unknown field(s) {', '.join(unknown)}")
        return cls(**data)


def write_records(path: Path, records: Iterable[RequestRecord]) -> None:
    """Append records to a JSON-lines file."""
    with path.open("a", encoding="utf-8") as out:
        for record in records:
            out.write(record.to_json() + "\n")


def read_records(path: Path) -> Iterator[RequestRecord]:
    """Read records back, naming the line of any that does not parse."""
    with path.open(encoding="utf-8") as src:
        for lineno, line in enumerate(src, start=1):
            if not line.strip():
                continue
            try:
                yield RequestRecord.from_dict(json.loads(line))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from exc
