"""The noisy client: its cases, its target check and its log, against a local stand-in server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from aiswarm_loadtest import noisy
from aiswarm_loadtest.noisy import (
    CASES,
    Case,
    answered_as_expected,
    main,
    read_log,
    summarise,
    target_allowed,
)


def test_the_cases_cover_the_issue_table_and_have_unique_names() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    required = {"messages_as_string", "max_tokens_negative", "max_tokens_huge", "oversized_prompt", "huge_n"}
    required |= {"huge_messages_array", "binary_body", "invalid_json", "oversized_body"}
    assert required <= set(names)
    sizes = {c.name: len(c.build()) for c in CASES}
    assert sizes["oversized_body"] > 4 * 1024 * 1024 > sizes["oversized_prompt"] > 2 * 1024 * 1024
    assert all(c.status in (400, 413) for c in CASES)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:4000", True),
        ("http://localhost:4000", True),
        ("http://172.30.57.10:4000", True),
        ("http://8.8.8.8:4000", False),
        ("http://example.com", False),
    ],
)
def test_only_loopback_and_private_targets(url: str, allowed: bool) -> None:
    assert target_allowed(url) is allowed


def test_expected_answer_needs_the_status_and_the_words() -> None:
    case = Case("x", lambda: b"", 400, "Context Window")
    assert answered_as_expected(case, 400, '{"error": {"message": "... context window of 4096"}}')
    assert not answered_as_expected(case, 400, "something else")
    assert not answered_as_expected(case, 200, "context window")


class _Refuser(BaseHTTPRequestHandler):
    """Answers every POST 400 with a fixed message, and counts the bearer keys it saw."""

    keys: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.keys.append(self.headers.get("Authorization", ""))
        body = json.dumps({"error": {"message": "messages must be a non-empty list"}}).encode()
        self.send_response(400)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_run_logs_every_request_and_whether_it_was_refused_as_expected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuser)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = tmp_path / "noisy.jsonl"
        monkeypatch.setenv("AISWARM_API_KEY", "sk-test-key")
        url = f"http://127.0.0.1:{server.server_port}"
        assert (
            main(["--gateway", url, "--duration", "0.5", "--out", str(out), "--cases", "no_messages,huge_n"])
            == 0
        )
    finally:
        server.shutdown()
    lines = read_log(out)
    assert lines and {line["case"] for line in lines} == {"no_messages", "huge_n"}
    # no_messages gets the words it expects; huge_n does not (the stand-in says something else).
    assert all(line["ok"] == (line["case"] == "no_messages") for line in lines)
    summary = summarise(lines)
    assert summary["requests"] == len(lines)
    assert set(summary["unexpected"]) == {"huge_n: HTTP 400"}
    assert set(_Refuser.keys) == {"Bearer sk-test-key"}
    assert json.loads(capsys.readouterr().out)["ok"] == summary["as_expected"]


def test_refusals_before_any_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISWARM_API_KEY", "k")
    out = str(tmp_path / "x.jsonl")
    with pytest.raises(SystemExit):
        main(["--gateway", "http://93.184.216.34:4000", "--out", out])
    with pytest.raises(SystemExit):
        main(["--gateway", "http://127.0.0.1:9", "--out", out, "--cases", "nope"])
    monkeypatch.delenv("AISWARM_API_KEY")
    with pytest.raises(SystemExit):
        main(["--gateway", "http://127.0.0.1:9", "--out", out])
    assert not Path(out).exists()
    assert noisy.read_log(Path(out)) == []
