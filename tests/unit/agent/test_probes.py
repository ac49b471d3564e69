"""The agent's readers: systemctl's output, the kernel's temperature sensors, an HTTP health check."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aiswarm.agent.decide import UnitState
from aiswarm.agent.probes import ProbeError, check_http, host_temperatures, parse_show, unit_state

# `systemctl show --property=...` of a unit with Restart=no after `systemctl kill -s KILL`
# (systemd 252, the lab's node image).
KILLED = """LoadState=loaded
ActiveState=failed
SubState=failed
Result=signal
ActiveEnterTimestampMonotonic=31390724490
"""


def test_parse_show_reads_a_killed_unit() -> None:
    assert parse_show(KILLED) == UnitState("loaded", "failed", "failed", "signal", 31390.72449)


def test_parse_show_of_a_unit_never_started() -> None:
    text = "LoadState=not-found\nActiveState=inactive\nSubState=dead\nResult=success\n"
    text += "ActiveEnterTimestampMonotonic=0\n"
    assert parse_show(text) == UnitState("not-found", "inactive", "dead", "success", None)


def test_unit_state_asks_for_the_properties_and_refuses_a_failed_call() -> None:
    calls = []

    def runner(argv):
        calls.append(list(argv))
        return 0, KILLED

    assert unit_state(runner, "aiswarm-dummy.service").result == "signal"
    assert calls == [
        [
            "show",
            "--property=LoadState,ActiveState,SubState,Result,ActiveEnterTimestampMonotonic",
            "--",
            "aiswarm-dummy.service",
        ]
    ]
    with pytest.raises(ProbeError, match=r"systemctl show x\.service: Failed to connect to bus"):
        unit_state(lambda argv: (1, "Failed to connect to bus"), "x.service")
    with pytest.raises(ProbeError, match="unexpected output"):
        unit_state(lambda argv: (0, "garbage"), "x.service")


def test_host_temperatures_from_hwmon_and_thermal_zones(tmp_path: Path) -> None:
    chip = tmp_path / "hwmon" / "hwmon1"
    chip.mkdir(parents=True)
    (chip / "name").write_text("coretemp\n")
    (chip / "temp1_input").write_text("52000\n")
    (chip / "temp1_label").write_text("Package id 0\n")
    (chip / "temp2_input").write_text("48500\n")  # no label: named by its file
    (chip / "temp3_input").write_text("")  # a sensor that reads nothing (ENODATA on real hosts)
    nvme = tmp_path / "hwmon" / "hwmon2"
    nvme.mkdir()
    (nvme / "name").write_text("nvme\n")
    (nvme / "temp1_input").write_text("39850\n")
    (nvme / "temp1_label").write_text("Composite\n")
    zone = tmp_path / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("x86_pkg_temp\n")
    (zone / "temp").write_text("53000\n")
    assert host_temperatures(tmp_path) == {
        "hwmon1/coretemp/Package id 0": 52.0,
        "hwmon1/coretemp/temp2": 48.5,
        "hwmon2/nvme/Composite": 39.85,
        "thermal_zone0/x86_pkg_temp": 53.0,
    }


def test_a_host_without_sensors_has_no_readings(tmp_path: Path) -> None:
    assert host_temperatures(tmp_path) == {}


class _Status(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = int(self.path.strip("/"))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def status_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, (True, "HTTP 200")),
        (204, (True, "HTTP 204")),
        (503, (False, "HTTP 503")),
        (404, (False, "HTTP 404")),
    ],
)
def test_check_http_wants_a_2xx(status_server: str, status: int, expected: tuple[bool, str]) -> None:
    assert check_http(f"{status_server}/{status}", 2.0) == expected


def test_check_http_of_a_closed_port_is_a_failure() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Status) as server:
        port = server.server_address[1]
    ok, detail = check_http(f"http://127.0.0.1:{port}/health", 2.0)
    assert not ok and detail.startswith("no answer:") and "refused" in detail.lower()
