# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of the model cache logic behind aiswarm.swarm.model_artifact (tmp_path, loopback HTTP)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.aiswarm.swarm.plugins.module_utils import _model_artifact as ma

PAYLOAD = b"GGUF" + bytes(range(256)) * 64
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
REV = "0123456789abcdef0123456789abcdef01234567"


class FileServer:
    """Loopback HTTP server: /model.gguf (with Content-Length), /nolength.gguf (without), else 404."""

    def __init__(self) -> None:
        payload = PAYLOAD

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path not in ("/model.gguf", "/nolength.gguf"):
                    self.send_error(404)
                    return
                self.send_response(200)
                if self.path == "/model.gguf":
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as srv:
        yield srv


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name.startswith(ma.TMP_PREFIX))


def place_url(cache: Path, name: str, url: str, sha: str = PAYLOAD_SHA) -> ma.Source:
    source = ma.make_source(url=url, sha256=sha)
    ma.download_url(url, source.sha256 or "", str(cache / name))
    ma.write_manifest(str(cache), name, ma.build_manifest(str(cache), name, source))
    return source


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("model.gguf", True),
        ("Qwen2.5-7B-Instruct", True),
        ("", False),
        (".", False),
        ("..", False),
        ("a/b", False),
        (".hidden", False),
        ("x" + ma.MANIFEST_SUFFIX, False),
    ],
)
def test_validate_name(name: str, ok: bool) -> None:
    if ok:
        ma.validate_name(name)
    else:
        with pytest.raises(ma.ArtifactError, match="name must"):
            ma.validate_name(name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (PAYLOAD_SHA, PAYLOAD_SHA),
        (PAYLOAD_SHA.upper(), PAYLOAD_SHA),
        (f"sha256:{PAYLOAD_SHA}", PAYLOAD_SHA),
        (f" {PAYLOAD_SHA} ", PAYLOAD_SHA),
        ("abc", None),
        (PAYLOAD_SHA[:-1] + "g", None),
    ],
)
def test_normalize_sha256(value: str, expected: str | None) -> None:
    if expected:
        assert ma.normalize_sha256(value) == expected
    else:
        with pytest.raises(ma.ArtifactError, match="64 hexadecimal"):
            ma.normalize_sha256(value)


@pytest.mark.parametrize(
    ("revision", "error"),
    [
        (REV, None),
        (REV.upper(), None),
        ("main", "pinned 40-character commit hash, got 'main'"),
        ("v1.0", "branch and tag names"),
        (REV[:12], "pinned"),
        (None, "revision is required"),
    ],
)
def test_validate_revision(revision: str | None, error: str | None) -> None:
    if error is None:
        assert ma.validate_revision(revision) == REV
    else:
        with pytest.raises(ma.ArtifactError, match=error):
            ma.validate_revision(revision)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, "exactly one of url, hf_repo or src"),
        ({"url": "http://x/m", "sha256": PAYLOAD_SHA, "src": "/etc/hostname"}, "exactly one"),
        ({"url": "http://x/m"}, "sha256 is required with url"),
        ({"url": "ftp://x/m", "sha256": PAYLOAD_SHA}, "must start with http"),
        ({"hf_repo": "org/model", "revision": "main"}, "pinned"),
        ({"src": "/nonexistent/aiswarm/model"}, "does not exist"),
    ],
)
def test_make_source_refuses(kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(ma.ArtifactError, match=error):
        ma.make_source(**kwargs)


def test_make_source_identities(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    hf = ma.make_source(hf_repo="org/m", revision=REV, allow_patterns=["*.json", "*.gguf"])
    assert hf.identity == {
        "type": "hf",
        "repo": "org/m",
        "revision": REV,
        "allow_patterns": ["*.gguf", "*.json"],
    }
    src = ma.make_source(src=str(tmp_path / "f"))
    assert src.identity["digest"] == hashlib.sha256(b"abc").hexdigest()


def test_download_url_places_verified_file(tmp_path: Path, server: FileServer) -> None:
    ma.download_url(f"{server.base}/model.gguf", PAYLOAD_SHA, str(tmp_path / "m.gguf"))
    assert (tmp_path / "m.gguf").read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == []


def test_download_url_without_content_length(tmp_path: Path, server: FileServer) -> None:
    ma.download_url(f"{server.base}/nolength.gguf", PAYLOAD_SHA, str(tmp_path / "m.gguf"))
    assert ma.sha256_file(str(tmp_path / "m.gguf")) == PAYLOAD_SHA


def test_download_url_checksum_mismatch_leaves_nothing(tmp_path: Path, server: FileServer) -> None:
    wrong = "0" * 64
    with pytest.raises(ma.ArtifactError) as err:
        ma.download_url(f"{server.base}/model.gguf", wrong, str(tmp_path / "m.gguf"))
    assert f"expected {wrong}, got {PAYLOAD_SHA}" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_download_url_mismatch_keeps_previous_artifact(tmp_path: Path, server: FileServer) -> None:
    (tmp_path / "m.gguf").write_bytes(b"old")
    with pytest.raises(ma.ArtifactError, match="sha256 mismatch"):
        ma.download_url(f"{server.base}/model.gguf", "1" * 64, str(tmp_path / "m.gguf"))
    assert (tmp_path / "m.gguf").read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_download_url_http_error(tmp_path: Path, server: FileServer) -> None:
    with pytest.raises(ma.ArtifactError, match=r"download of .*/missing\.gguf failed: HTTP Error 404"):
        ma.download_url(f"{server.base}/missing.gguf", PAYLOAD_SHA, str(tmp_path / "m.gguf"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("size_bytes", "needed"),
    [(None, len(PAYLOAD)), (10**12, 10**12)],
    ids=["content-length", "size_bytes"],
)
def test_download_url_refuses_when_disk_is_full(
    tmp_path: Path, server: FileServer, monkeypatch: pytest.MonkeyPatch, size_bytes: int | None, needed: int
) -> None:
    monkeypatch.setattr(ma, "free_bytes", lambda _path: 100)
    with pytest.raises(ma.ArtifactError) as err:
        ma.download_url(f"{server.base}/model.gguf", PAYLOAD_SHA, str(tmp_path / "m.gguf"), size_bytes)
    assert f"needs {needed} bytes, 100 bytes free" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_is_current_tracks_source_and_content(tmp_path: Path, server: FileServer) -> None:
    url = f"{server.base}/model.gguf"
    source = place_url(tmp_path, "m.gguf", url)
    assert ma.is_current(str(tmp_path), "m.gguf", source)
    other = ma.make_source(url=url.replace("model", "other"), sha256=PAYLOAD_SHA)
    assert not ma.is_current(str(tmp_path), "m.gguf", other)
    os.utime(tmp_path / "m.gguf", ns=(1, 1))  # stat differs, content same: re-hash accepts it
    assert ma.is_current(str(tmp_path), "m.gguf", source)
    (tmp_path / "m.gguf").write_bytes(PAYLOAD[:-1] + b"X")  # same size, other content
    assert not ma.is_current(str(tmp_path), "m.gguf", source)


def test_is_current_without_manifest_or_artifact(tmp_path: Path, server: FileServer) -> None:
    source = place_url(tmp_path, "m.gguf", f"{server.base}/model.gguf")
    (tmp_path / "m.gguf").unlink()
    assert not ma.is_current(str(tmp_path), "m.gguf", source)
    (tmp_path / "m.gguf").write_bytes(PAYLOAD)
    (tmp_path / ("m.gguf" + ma.MANIFEST_SUFFIX)).write_text("not json")
    assert not ma.is_current(str(tmp_path), "m.gguf", source)


def test_copy_src_directory_and_change_detection(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub" / "weights.bin").write_bytes(b"w" * 1000)
    cache = tmp_path / "cache"
    cache.mkdir()
    source = ma.make_source(src=str(src))
    ma.copy_src(str(src), str(cache / "model"))
    manifest = ma.build_manifest(str(cache), "model", source)
    ma.write_manifest(str(cache), "model", manifest)
    assert manifest["kind"] == "directory"
    assert manifest["size_bytes"] == 1002
    assert manifest["file_count"] == 2
    assert manifest["sha256"] is None
    assert ma.is_current(str(cache), "model", source)
    (src / "extra.txt").write_text("new")
    assert not ma.is_current(str(cache), "model", ma.make_source(src=str(src)))
    ma.copy_src(str(src), str(cache / "model"))  # replacing a directory
    assert (cache / "model" / "extra.txt").read_text() == "new"
    assert leftovers(cache) == []


def test_copy_src_refuses_when_disk_is_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f").write_bytes(b"x" * 500)
    monkeypatch.setattr(ma, "free_bytes", lambda _path: 10)
    with pytest.raises(ma.ArtifactError, match="needs 500 bytes, 10 bytes free"):
        ma.copy_src(str(tmp_path / "f"), str(tmp_path / "g"))
    assert not (tmp_path / "g").exists()


def test_download_hf_with_fake_downloader(tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []

    def fake_snapshot_download(**kwargs: Any) -> str:
        calls.append(kwargs)
        Path(kwargs["local_dir"], "config.json").write_text("{}")
        return kwargs["local_dir"]

    ma.download_hf("org/m", REV, str(tmp_path / "m"), fake_snapshot_download, ["*.json"], token="hf_x")
    assert (tmp_path / "m" / "config.json").read_text() == "{}"
    assert calls[0]["repo_id"] == "org/m"
    assert calls[0]["revision"] == REV
    assert calls[0]["allow_patterns"] == ["*.json"]
    assert calls[0]["token"] == "hf_x"
    assert leftovers(tmp_path) == []


def test_download_hf_failure_leaves_nothing(tmp_path: Path) -> None:
    def broken(**kwargs: Any) -> str:
        Path(kwargs["local_dir"], "partial.safetensors").write_bytes(b"half")
        raise RuntimeError("connection reset")

    with pytest.raises(ma.ArtifactError, match=f"org/m@{REV} from Hugging Face failed: connection reset"):
        ma.download_hf("org/m", REV, str(tmp_path / "m"), broken)
    assert list(tmp_path.iterdir()) == []


def _entry(name: str, size: int, used: float) -> ma.CacheEntry:
    return ma.CacheEntry(name=name, size_bytes=size, last_used=used)


@pytest.mark.parametrize(
    ("entries", "keep", "max_bytes", "keep_size", "expected"),
    [
        ([_entry("a", 100, 1), _entry("b", 100, 2), _entry("new", 100, 3)], "new", 300, None, []),
        ([_entry("a", 100, 1), _entry("b", 100, 2), _entry("new", 100, 3)], "new", 250, None, ["a"]),
        ([_entry("a", 100, 1), _entry("b", 100, 2), _entry("new", 100, 3)], "new", 150, None, ["a", "b"]),
        # the artifact just placed is never evicted, even when alone it is over the limit
        ([_entry("new", 500, 0), _entry("a", 100, 1)], "new", 100, None, ["a"]),
        # check mode: the new artifact is not there yet, its predicted size counts
        ([_entry("a", 100, 1), _entry("b", 100, 2)], "new", 250, 100, ["a"]),
        ([], "new", 0, None, []),
    ],
)
def test_plan_eviction(
    entries: list[ma.CacheEntry], keep: str, max_bytes: int, keep_size: int | None, expected: list[str]
) -> None:
    assert ma.plan_eviction(entries, keep, max_bytes, keep_size) == expected


def test_list_cache_orders_by_manifest_use(tmp_path: Path) -> None:
    for i, name in enumerate(["b", "a", "c"]):
        (tmp_path / name).write_bytes(b"x" * (i + 1))
        ma.write_manifest(str(tmp_path), name, {"name": name, "size_bytes": i + 1})
        os.utime(tmp_path / (name + ma.MANIFEST_SUFFIX), (1000 + i, 1000 + i))
    (tmp_path / "unmanaged.bin").write_bytes(b"zzz")
    ma.touch_manifest(str(tmp_path), "b")  # used just now
    entries = ma.list_cache(str(tmp_path))
    assert [(e.name, e.size_bytes) for e in entries] == [("a", 2), ("c", 3), ("b", 1)]


def test_remove_artifact(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    ma.write_manifest(str(tmp_path), "d", {"name": "d"})
    ma.remove_artifact(str(tmp_path), "d")
    assert list(tmp_path.iterdir()) == []
