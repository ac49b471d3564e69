# SPDX-License-Identifier: GPL-3.0-or-later
"""Whole-module test harness: AnsibleModule's exits raise, so a test can catch the result."""

from __future__ import annotations

from typing import Any

from ansible.module_utils import basic


class ExitJson(Exception):
    """Raised by a patched exit_json; args[0] is the module's result."""


class FailJson(Exception):
    """Raised by a patched fail_json; args[0] holds msg and the other keys."""


def _exit_json(self: basic.AnsibleModule, **kwargs: Any) -> None:
    raise ExitJson(kwargs)


def _fail_json(self: basic.AnsibleModule, msg: str, **kwargs: Any) -> None:
    raise FailJson({"msg": msg, **kwargs})


def patch_exits(monkeypatch: Any) -> None:
    """Make exit_json and fail_json raise ExitJson and FailJson for the test's duration."""
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)
