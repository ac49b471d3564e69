# SPDX-License-Identifier: GPL-3.0-or-later
"""Whole-module tests for aiswarm.swarm.model_artifact (tmp_path, loopback HTTP, fake hub)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.aiswarm.swarm.plugins.module_utils import _model_artifact as ma
from ansible_collections.aiswarm.swarm.plugins.modules import model_artifact
from ansible_collections.aiswarm.swarm.tests.unit.plugins.modules.utils import ExitJson, FailJson

PAYLOAD = b"tiny gguf " * 1000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
REV = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture
def url() -> Iterator[str]:
    """A loopback HTTP server serving PAYLOAD at the yielded URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/model.gguf"
    httpd.shutdown()
    httpd.server_close()


def run(args: dict[str, Any], check: bool = False, diff: bool = False) -> dict[str, Any]:
    with (
        patch_module_args({**args, "_ansible_check_mode": check, "_ansible_diff": diff}),
        pytest.raises(ExitJson) as result,
    ):
        model_artifact.main()
    return result.value.args[0]


def fail(args: dict[str, Any], check: bool = False) -> dict[str, Any]:
    with patch_module_args({**args, "_ansible_check_mode": check}), pytest.raises(FailJson) as result:
        model_artifact.main()
    return result.value.args[0]


def test_url_check_mode_then_real_then_idempotent(tmp_path: Path, url: str) -> None:
    cache = tmp_path / "models"
    args = {"name": "m.gguf", "cache_dir": str(cache), "url": url, "sha256": PAYLOAD_SHA}

    predicted = run(args, check=True, diff=True)
    assert predicted["changed"] is True
    assert predicted["diff"]["before"] == {}
    assert predicted["diff"]["after"]["source"] == {"type": "url", "url": url, "sha256": PAYLOAD_SHA}
    assert not cache.exists()

    first = run(args, diff=True)
    assert first["changed"] is True
    assert first["path"] == str(cache / "m.gguf")
    assert first["size_bytes"] == len(PAYLOAD)
    assert first["sha256"] == PAYLOAD_SHA
    assert first["diff"]["after"]["sha256"] == PAYLOAD_SHA
    assert (cache / "m.gguf").read_bytes() == PAYLOAD

    assert run(args, check=True)["changed"] is False
    second = run(args, diff=True)
    assert second["changed"] is False
    assert second["diff"]["before"] == second["diff"]["after"]
    assert "diff" not in run(args)


def test_url_checksum_mismatch_fails_and_places_nothing(tmp_path: Path, url: str) -> None:
    wrong = "f" * 64
    result = fail({"name": "m.gguf", "cache_dir": str(tmp_path), "url": url, "sha256": wrong})
    assert f"expected {wrong}, got {PAYLOAD_SHA}" in result["msg"]
    assert list(tmp_path.iterdir()) == []


def test_url_source_change_replaces_artifact(tmp_path: Path, url: str) -> None:
    args = {"name": "m.gguf", "cache_dir": str(tmp_path), "url": url, "sha256": PAYLOAD_SHA}
    run(args)
    again = run({**args, "url": url + "?mirror=2"}, diff=True)
    assert again["changed"] is True
    assert again["diff"]["before"]["source"]["url"] == url
    assert again["diff"]["after"]["source"]["url"] == url + "?mirror=2"


def test_disk_space_refusal_names_needed_and_free(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ma, "free_bytes", lambda _path: 1000)
    args = {"name": "m.gguf", "cache_dir": str(tmp_path), "url": url, "sha256": PAYLOAD_SHA}
    assert "needs 10000 bytes, 1000 bytes free" in fail(args)["msg"]
    assert "needs 5000000 bytes, 1000 bytes free" in fail({**args, "size_bytes": 5000000}, check=True)["msg"]
    assert list(tmp_path.iterdir()) == []


def test_hf_branch_name_is_refused(tmp_path: Path) -> None:
    result = fail({"name": "m", "cache_dir": str(tmp_path), "hf_repo": "org/m", "revision": "main"})
    assert "pinned 40-character commit hash" in result["msg"]


def test_hf_without_huggingface_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ma, "HAS_HUGGINGFACE_HUB", False)
    result = fail({"name": "m", "cache_dir": str(tmp_path), "hf_repo": "org/m", "revision": REV})
    assert "huggingface_hub" in result["msg"]


def test_hf_with_fake_downloader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake_snapshot_download(**kwargs: Any) -> str:
        calls.append(kwargs)
        Path(kwargs["local_dir"], "config.json").write_text(json.dumps({"revision": kwargs["revision"]}))
        Path(kwargs["local_dir"], "model.safetensors").write_bytes(b"w" * 64)
        return kwargs["local_dir"]

    monkeypatch.setattr(ma, "HAS_HUGGINGFACE_HUB", True)
    monkeypatch.setattr(ma, "snapshot_download", fake_snapshot_download)
    args = {"name": "m", "cache_dir": str(tmp_path), "hf_repo": "org/m", "revision": REV, "hf_token": "hf_s"}
    first = run(args)
    assert first["changed"] is True
    assert first["sha256"] is None
    assert first["size_bytes"] == 64 + len(json.dumps({"revision": REV}))
    assert calls[0]["token"] == "hf_s"
    assert run(args)["changed"] is False
    assert len(calls) == 1
    other = REV[::-1]
    assert run({**args, "revision": other})["changed"] is True
    assert calls[-1]["revision"] == other


def test_src_file_and_absent(tmp_path: Path) -> None:
    src = tmp_path / "tiny.gguf"
    src.write_bytes(b"abc")
    cache = tmp_path / "cache"
    args = {"name": "tiny.gguf", "cache_dir": str(cache), "src": str(src)}
    placed = run(args)
    assert placed["changed"] is True
    assert placed["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert run(args)["changed"] is False

    absent = {"name": "tiny.gguf", "cache_dir": str(cache), "state": "absent"}
    predicted = run(absent, check=True, diff=True)
    assert predicted["changed"] is True
    assert predicted["diff"]["before"]["name"] == "tiny.gguf"
    assert (cache / "tiny.gguf").exists()
    assert run(absent)["changed"] is True
    assert list(cache.iterdir()) == []
    assert run(absent)["changed"] is False


def _seed_cache(cache: Path, names: list[str], size: int) -> None:
    cache.mkdir()
    for age, name in enumerate(names):
        (cache / name).write_bytes(b"x" * size)
        source = ma.make_source(src=str(cache / name))
        ma.write_manifest(str(cache), name, ma.build_manifest(str(cache), name, source))
        os.utime(cache / (name + ma.MANIFEST_SUFFIX), (1000 + age, 1000 + age))


def test_cache_max_bytes_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _seed_cache(cache, ["oldest", "older", "recent"], 100)
    (tmp_path / "new").write_bytes(b"n" * 100)
    args = {"name": "new", "cache_dir": str(cache), "src": str(tmp_path / "new"), "cache_max_bytes": 250}

    predicted = run(args, check=True)
    assert predicted["evicted"] == ["oldest", "older"]
    assert (cache / "oldest").exists()

    result = run(args)
    assert result["evicted"] == ["oldest", "older"]
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(ma.MANIFEST_SUFFIX)) == [
        "new",
        "recent",
    ]
    assert run(args)["changed"] is False


def test_cache_max_bytes_never_evicts_the_new_artifact(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _seed_cache(cache, ["old"], 10)
    (tmp_path / "big").write_bytes(b"b" * 500)
    args = {"name": "big", "cache_dir": str(cache), "src": str(tmp_path / "big"), "cache_max_bytes": 100}
    assert run(args)["evicted"] == ["old"]
    assert (cache / "big").exists()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"name": "m"}, "state is present but any of the following are missing: hf_repo, url, src"),
        ({"name": "m", "url": "http://x/m"}, "missing parameter(s) required by 'url': sha256"),
        ({"name": "m", "src": "/a", "url": "http://x/m", "sha256": "0" * 64}, "mutually exclusive"),
        ({"name": "../etc", "src": "/etc/hostname"}, "plain file or directory name"),
        ({"name": "m", "src": "/etc/hostname", "cache_max_bytes": -1}, "cache_max_bytes must be"),
    ],
)
def test_bad_arguments(tmp_path: Path, args: dict[str, Any], error: str) -> None:
    assert error in fail({"cache_dir": str(tmp_path), **args})["msg"]
