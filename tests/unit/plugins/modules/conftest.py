# SPDX-License-Identifier: GPL-3.0-or-later
"""Every whole-module test runs with exit_json/fail_json patched to raise."""

from __future__ import annotations

import pytest
from ansible_collections.aiswarm.swarm.tests.unit.plugins.modules.utils import patch_exits


@pytest.fixture(autouse=True)
def _module_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_exits(monkeypatch)
