"""lab/lab.py's stand-in providers: inventory checks and generated test keys."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[3] / "lab" / "lab.py"
_SPEC = importlib.util.spec_from_file_location("aiswarm_lab_cli", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
lab = importlib.util.module_from_spec(_SPEC)
sys.modules["aiswarm_lab_cli"] = lab
_SPEC.loader.exec_module(lab)

HOSTVARS = {"lab_host_address": "172.30.57.1", "lab_standins": {"openrouter": {"port": 18101},
            "gemini": {"port": 18100, "keys": 2}}}  # fmt: skip


def test_standins_come_from_the_inventory_sorted_by_name() -> None:
    assert lab._standins(HOSTVARS) == (
        lab.Standin("gemini", "172.30.57.1", 18100, 2),
        lab.Standin("openrouter", "172.30.57.1", 18101, 1),
    )
    assert lab._standins({}) == ()


@pytest.mark.parametrize(
    ("hostvars", "message"),
    [
        ({"lab_standins": {"gemini": {"port": 18100}}}, "lab_host_address: expected this machine's address"),
        (
            {**HOSTVARS, "lab_standins": {"gemini": {"port": 80}}},
            r"lab_standins.gemini.port: expected a port",
        ),
        (
            {**HOSTVARS, "lab_standins": {"gemini": {"port": 18100, "keys": 0}}},
            r"gemini.keys: expected 1 to 8",
        ),
        ({**HOSTVARS, "lab_standins": ["gemini"]}, r"lab_standins: expected \{name"),
    ],
)
def test_a_bad_standin_entry_is_named(hostvars: dict, message: str) -> None:
    with pytest.raises(lab.LabError, match=message):
        lab._standins(hostvars)


def test_keys_are_generated_once_and_reused(tmp_path: Path) -> None:
    standin = lab.Standin("gemini", "172.30.57.1", 18100, 2)
    first = lab.standin_keys(standin, tmp_path)
    assert len(first) == 2 and len(set(first)) == 2
    assert all(len(key) == 32 and key.isalnum() for key in first)
    assert lab.standin_keys(standin, tmp_path) == first
    assert (tmp_path / "standin_gemini_key1").stat().st_mode & 0o777 == 0o600
