# Copyright: (c) 2026, aiswarm.swarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Content digests of controller-side files, so that a role can skip a copy that would change nothing.

Filters:
  - ``tree_digest``: sha1 over the relative paths and contents of every file under a folder
    (``__pycache__`` and ``*.pyc`` left out), in path order. One local read per file instead of
    one remote ``stat`` per file: a no-op run of a role that ships a Python package then costs one
    task on the node, not one per file.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from ansible.errors import AnsibleFilterError

SKIPPED_DIRS = frozenset({"__pycache__"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")


def tree_digest(path: Any, *extra_files: Any) -> str:
    """sha1 hex digest of the files under `path` (and of each of `extra_files`, by name and content)."""
    if not isinstance(path, str) or not os.path.isdir(path):
        raise AnsibleFilterError(f"tree_digest: {path!r} is not a folder on the controller")
    digest = hashlib.sha1()
    files: list[tuple[str, str]] = []
    for top, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in names:
            if not name.endswith(SKIPPED_SUFFIXES):
                full = os.path.join(top, name)
                files.append((os.path.relpath(full, path), full))
    for extra in extra_files:
        if not isinstance(extra, str) or not os.path.isfile(extra):
            raise AnsibleFilterError(f"tree_digest: {extra!r} is not a file on the controller")
        files.append((os.path.basename(extra), extra))
    for relative, full in sorted(files):
        digest.update(relative.encode() + b"\0")
        with open(full, "rb") as handle:
            digest.update(hashlib.sha1(handle.read()).digest())
    return digest.hexdigest()


class FilterModule:
    """File digest filters."""

    def filters(self) -> dict[str, Any]:
        return {"tree_digest": tree_digest}
