"""The lab's Alertmanager receiver: a webhook that records every notification it gets.

A test instrument, named as such: Alertmanager's `webhook_configs` posts its notifications here
(the lab inventory's receiver), and the lab tests and the chaos runner read them back to see
which alert fired or resolved, and when it reached the receiver.

    python -m aiswarm_loadtest.alertsink --host 172.30.57.1 --port 18102 --log alerts.jsonl

- ``POST /alerts``: an Alertmanager webhook payload (version 4). Each alert in it is recorded
  with the receiver's clock (``received``, epoch seconds), its ``status`` (firing or resolved),
  ``alertname``, labels, annotations and ``startsAt``/``endsAt``; one JSON line per alert is
  appended to the log file, so a restart keeps the history.
- ``GET /alerts?since=<epoch>&alertname=<name>``: the recorded alerts, oldest first.
- ``GET /health``: 200.
- ``DELETE /alerts``: forget what was recorded (the log file keeps it).

Only loopback and the lab's own network should reach it; it has no authentication, as it
receives nothing but alert labels.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 4 * 1024 * 1024


def records_from_payload(payload: Any, received: float) -> list[dict[str, Any]]:
    """One record per alert of an Alertmanager webhook payload; raises ValueError on a bad one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise ValueError("expected an Alertmanager webhook payload: an object with an 'alerts' list")
    records = []
    for alert in payload["alerts"]:
        if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
            raise ValueError("expected each alert to be an object with a 'labels' object")
        labels = {str(k): str(v) for k, v in alert["labels"].items()}
        records.append(
            {
                "received": received,
                "receiver": payload.get("receiver"),
                "status": alert.get("status", payload.get("status")),
                "alertname": labels.get("alertname", ""),
                "labels": labels,
                "annotations": alert.get("annotations") or {},
                "startsAt": alert.get("startsAt"),
                "endsAt": alert.get("endsAt"),
                "fingerprint": alert.get("fingerprint"),
            }
        )
    return records


class AlertStore:
    """Recorded alerts in memory, appended to a JSON-lines file when one is given."""

    def __init__(self, log: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._log = log
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)

    def add(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            self._records.extend(records)
            if self._log is not None:
                with self._log.open("a", encoding="utf-8") as handle:
                    for record in records:
                        handle.write(json.dumps(record, sort_keys=True) + "\n")

    def query(self, since: float = 0.0, alertname: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                r
                for r in self._records
                if r["received"] >= since and (alertname is None or r["alertname"] == alertname)
            ]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


def make_handler(store: AlertStore, clock=time.time) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "aiswarm-alertsink"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/health":
                self._send(200, {"status": "ok"})
                return
            if url.path != "/alerts":
                self._send(404, {"error": f"no such path {url.path}: try /alerts or /health"})
                return
            query = parse_qs(url.query)
            try:
                since = float(query.get("since", ["0"])[0])
            except ValueError:
                self._send(400, {"error": "since: expected epoch seconds"})
                return
            alertname = query.get("alertname", [None])[0]
            self._send(200, {"alerts": store.query(since, alertname)})

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/alerts":
                self._send(404, {"error": "POST /alerts only"})
                return
            length = int(self.headers.get("content-length") or 0)
            if length <= 0 or length > MAX_BODY:
                self._send(400, {"error": f"content-length: expected 1 to {MAX_BODY} bytes"})
                return
            try:
                records = records_from_payload(json.loads(self.rfile.read(length)), clock())
            except ValueError as exc:
                self._send(400, {"error": str(exc)})
                return
            store.add(records)
            self._send(200, {"recorded": len(records)})

        def do_DELETE(self) -> None:
            if urlsplit(self.path).path != "/alerts":
                self._send(404, {"error": "DELETE /alerts only"})
                return
            store.clear()
            self._send(200, {"cleared": True})

    return Handler


def serve(host: str, port: int, log: Path | None) -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), make_handler(AlertStore(log)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aiswarm_loadtest.alertsink", description=__doc__.split("\n", maxsplit=1)[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18102)
    parser.add_argument("--log", type=Path, help="append every recorded alert to this JSON-lines file")
    args = parser.parse_args(argv)
    server = serve(args.host, args.port, args.log)
    print(f"alertsink: receiving Alertmanager webhooks on http://{args.host}:{args.port}/alerts", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
