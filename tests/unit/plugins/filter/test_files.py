# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of the tree_digest filter."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.aiswarm.swarm.plugins.filter.files import FilterModule, tree_digest


def tree(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("a = 1\n")
    (root / "pkg" / "sub" / "b.py").write_text("b = 2\n")
    (root / "meta.toml").write_text("[project]\n")
    return root


def test_the_digest_follows_content_paths_and_extra_files(tmp_path: Path) -> None:
    root = tree(tmp_path)
    first = tree_digest(str(root / "pkg"))
    assert first == tree_digest(str(root / "pkg"))
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\x00")
    (root / "pkg" / "c.pyc").write_bytes(b"\x00")
    assert tree_digest(str(root / "pkg")) == first  # compiled files do not count
    with_meta = tree_digest(str(root / "pkg"), str(root / "meta.toml"))
    assert with_meta != first
    (root / "meta.toml").write_text("[project]\nname = 'x'\n")
    assert tree_digest(str(root / "pkg"), str(root / "meta.toml")) != with_meta
    (root / "pkg" / "a.py").write_text("a = 2\n")
    assert tree_digest(str(root / "pkg")) != first
    (root / "pkg" / "a.py").write_text("a = 1\n")
    (root / "pkg" / "a.py").rename(root / "pkg" / "z.py")
    assert tree_digest(str(root / "pkg")) != first  # same bytes, another name


def test_bad_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(AnsibleFilterError, match="is not a folder on the controller"):
        tree_digest(str(tmp_path / "missing"))
    with pytest.raises(AnsibleFilterError, match="is not a file on the controller"):
        tree_digest(str(tmp_path), str(tmp_path / "missing.toml"))


def test_the_filter_is_exposed() -> None:
    assert FilterModule().filters() == {"tree_digest": tree_digest}
