# Copyright: (c) 2026, aiswarm.swarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Placing model artifacts in a node's model cache (logic behind the model_artifact module).

Layout of a cache directory::

    <cache_dir>/<name>                         the artifact: a file or a directory
    <cache_dir>/<name>.aiswarm-artifact.json   its manifest: source, checksum, size

The manifest makes re-verification cheap (a stat instead of a re-hash when size and mtime are
unchanged) and lets a change of source (another URL, checksum or revision) be detected. Its
mtime is refreshed each time the module places or verifies the artifact, which is the
"recently used" clock of the least-recently-used eviction.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url

try:
    import huggingface_hub

    HAS_HUGGINGFACE_HUB = True
    HUGGINGFACE_HUB_IMPORT_ERROR: str | None = None
    snapshot_download: Callable[..., Any] | None = huggingface_hub.snapshot_download
except ImportError as _exc:  # pragma: no cover - depends on the environment
    HAS_HUGGINGFACE_HUB = False
    HUGGINGFACE_HUB_IMPORT_ERROR = str(_exc)
    snapshot_download = None

MANIFEST_SUFFIX = ".aiswarm-artifact.json"
TMP_PREFIX = ".aiswarm-tmp-"
CHUNK = 1024 * 1024
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

Downloader = Callable[..., Any]


class ArtifactError(Exception):
    """A failure the module reports through fail_json, with a message a person can act on."""


@dataclass
class Source:
    """Where an artifact comes from; `identity` is what the manifest compares."""

    kind: str  # url | hf | src
    url: str = ""
    sha256: str = ""
    hf_repo: str = ""
    revision: str = ""
    allow_patterns: list[str] | None = None
    src: str = ""
    identity: dict[str, Any] = field(default_factory=dict)


def validate_name(name: str) -> None:
    """Refuse names that would escape the cache dir or collide with manifests and temp files."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ArtifactError(f"name must be a plain file or directory name without '/', got {name!r}")
    if name.startswith(".") or name.endswith(MANIFEST_SUFFIX):
        raise ArtifactError(
            f"name must not start with '.' or end with '{MANIFEST_SUFFIX}' (reserved), got {name!r}"
        )


def normalize_sha256(value: str) -> str:
    """Return a lowercase hex sha256, accepting an optional `sha256:` prefix."""
    digest = value.strip().lower().removeprefix("sha256:")
    if not _HEX64.match(digest):
        raise ArtifactError(f"sha256 must be 64 hexadecimal characters, got {value!r}")
    return digest


def validate_revision(revision: str | None) -> str:
    """A Hugging Face revision must be a pinned 40-hex commit, never a branch or tag."""
    if not revision:
        raise ArtifactError("revision is required with hf_repo: give the 40-character commit hash to pin")
    rev = revision.strip().lower()
    if not _HEX40.match(rev):
        raise ArtifactError(
            f"revision must be a pinned 40-character commit hash, got {revision!r}: branch and tag names "
            "such as 'main' move and would make the cache non-reproducible; copy the commit id from the "
            "model page's 'Files and versions' history"
        )
    return rev


def make_source(
    url: str | None = None,
    sha256: str | None = None,
    hf_repo: str | None = None,
    revision: str | None = None,
    allow_patterns: list[str] | None = None,
    src: str | None = None,
) -> Source:
    """Validate the one chosen source and build its identity (what the manifest records)."""
    chosen = [n for n, v in (("url", url), ("hf_repo", hf_repo), ("src", src)) if v]
    if len(chosen) != 1:
        raise ArtifactError(
            f"give exactly one of url, hf_repo or src for state=present, got {chosen or 'none'}"
        )
    if url:
        if not sha256:
            raise ArtifactError("sha256 is required with url: the download is verified against it")
        if not url.startswith(("http://", "https://")):
            raise ArtifactError(f"url must start with http:// or https://, got {url!r}")
        digest = normalize_sha256(sha256)
        return Source("url", url=url, sha256=digest, identity={"type": "url", "url": url, "sha256": digest})
    if hf_repo:
        rev = validate_revision(revision)
        identity: dict[str, Any] = {"type": "hf", "repo": hf_repo, "revision": rev}
        if allow_patterns:
            identity["allow_patterns"] = sorted(allow_patterns)
        return Source("hf", hf_repo=hf_repo, revision=rev, allow_patterns=allow_patterns, identity=identity)
    src = str(src)
    if not os.path.exists(src):
        raise ArtifactError(f"src {src!r} does not exist on the node")
    src_abs = os.path.abspath(src)
    return Source(
        "src", src=src_abs, identity={"type": "src", "path": src_abs, "digest": digest_path(src_abs)}
    )


def sha256_file(path: str) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _walk_files(root: str) -> list[str]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        found.extend(os.path.relpath(os.path.join(dirpath, f), root) for f in files)
    return sorted(found)


def digest_path(path: str) -> str:
    """sha256 of a file, or of a directory tree (relative paths and file digests, sorted)."""
    if os.path.isfile(path):
        return sha256_file(path)
    h = hashlib.sha256()
    for rel in _walk_files(path):
        h.update(f"{rel}\0{sha256_file(os.path.join(path, rel))}\n".encode())
    return h.hexdigest()


def stat_summary(path: str) -> dict[str, Any]:
    """Cheap fingerprint of a placed artifact: kind, total size, file count and newest mtime."""
    if os.path.isfile(path):
        st = os.stat(path)
        return {"kind": "file", "size_bytes": st.st_size, "file_count": 1, "mtime_ns": st.st_mtime_ns}
    size = count = newest = 0
    for rel in _walk_files(path):
        st = os.stat(os.path.join(path, rel))
        size += st.st_size
        count += 1
        newest = max(newest, st.st_mtime_ns)
    return {"kind": "directory", "size_bytes": size, "file_count": count, "mtime_ns": newest}


def manifest_path(cache_dir: str, name: str) -> str:
    return os.path.join(cache_dir, name + MANIFEST_SUFFIX)


def read_manifest(cache_dir: str, name: str) -> dict[str, Any] | None:
    """The manifest of `name`, or None when it is missing or unreadable."""
    try:
        with open(manifest_path(cache_dir, name), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(cache_dir: str, name: str, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (temp file + rename)."""
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=TMP_PREFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, manifest_path(cache_dir, name))
    except BaseException:
        _remove(tmp)
        raise


def touch_manifest(cache_dir: str, name: str) -> None:
    """Mark the artifact as used now (the LRU clock)."""
    os.utime(manifest_path(cache_dir, name))


def is_current(cache_dir: str, name: str, source: Source) -> bool:
    """True when `name` is present, came from `source` and still matches its manifest.

    Size, file count and mtime equal to the manifest's are trusted; otherwise a file is re-hashed
    and accepted if its sha256 still matches (the manifest's stat part is then stale, not wrong).
    """
    path = os.path.join(cache_dir, name)
    manifest = read_manifest(cache_dir, name)
    if manifest is None or manifest.get("source") != source.identity or not os.path.exists(path):
        return False
    current = stat_summary(path)
    recorded = {k: manifest.get(k) for k in ("kind", "size_bytes", "file_count", "mtime_ns")}
    if current == recorded:
        return True
    if current["kind"] == "file" and manifest.get("sha256"):
        return sha256_file(path) == manifest["sha256"]
    return False


def free_bytes(cache_dir: str) -> int:
    return shutil.disk_usage(cache_dir).free


def check_space(cache_dir: str, needed: int | None, what: str) -> None:
    """Refuse to start a placement that cannot fit on the cache's filesystem."""
    if needed is None:
        return
    free = free_bytes(cache_dir)
    if needed > free:
        raise ArtifactError(
            f"not enough disk space in {cache_dir} for {what}: needs {needed} bytes, {free} bytes free; "
            "free space, lower cache_max_bytes so older artifacts are evicted, or pick another cache_dir"
        )


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def _install(tmp: str, final: str) -> None:
    """Move a finished temp file or directory into place (replacing what was there)."""
    if os.path.isdir(final) and not os.path.islink(final):
        old = final + ".aiswarm-old"
        _remove(old)
        os.rename(final, old)
        os.rename(tmp, final)
        _remove(old)
    else:
        os.replace(tmp, final)


def download_url(
    url: str,
    sha256: str,
    final: str,
    size_bytes: int | None = None,
    timeout: float = 60.0,
    opener: Callable[..., Any] = open_url,
) -> None:
    """Stream `url` to a temp file next to `final`, verify its sha256, then rename it into place.

    The free-space check uses `size_bytes` when given, else the response's Content-Length. Any
    failure (network, checksum, disk) removes the temp file, so no partial artifact is left.
    """
    cache_dir = os.path.dirname(final)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=TMP_PREFIX)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            opener(url, timeout=timeout, http_agent="aiswarm.swarm.model_artifact") as response,
        ):
            length = response.headers.get("Content-Length")
            needed = size_bytes if size_bytes is not None else (int(length) if length else None)
            check_space(cache_dir, needed, url)
            h = hashlib.sha256()
            while chunk := response.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        actual = h.hexdigest()
        if actual != sha256:
            raise ArtifactError(
                f"sha256 mismatch for {url}: expected {sha256}, got {actual}; nothing was placed"
            )
        os.chmod(tmp, 0o644)
        _install(tmp, final)
    except (OSError, UrlsConnectionError) as exc:
        _remove(tmp)
        raise ArtifactError(f"download of {url} failed: {exc}") from exc
    except BaseException:
        _remove(tmp)
        raise


def download_hf(
    repo: str,
    revision: str,
    final: str,
    downloader: Downloader,
    allow_patterns: list[str] | None = None,
    token: str | None = None,
) -> None:
    """Download a pinned Hugging Face snapshot into a temp dir next to `final`, then rename it."""
    tmp = tempfile.mkdtemp(dir=os.path.dirname(final), prefix=TMP_PREFIX)
    try:
        downloader(repo_id=repo, revision=revision, local_dir=tmp, allow_patterns=allow_patterns, token=token)
        _install(tmp, final)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, Exception) and not isinstance(exc, ArtifactError):
            raise ArtifactError(f"download of {repo}@{revision} from Hugging Face failed: {exc}") from exc
        raise


def copy_src(src: str, final: str) -> None:
    """Copy a local file or directory to a temp path next to `final`, then rename it."""
    cache_dir = os.path.dirname(final)
    check_space(cache_dir, stat_summary(src)["size_bytes"], src)
    tmp = tempfile.mkdtemp(dir=cache_dir, prefix=TMP_PREFIX)
    try:
        if os.path.isdir(src):
            target = os.path.join(tmp, "tree")
            shutil.copytree(src, target, symlinks=False)
        else:
            target = os.path.join(tmp, "file")
            shutil.copyfile(src, target)
            os.chmod(target, 0o644)
        _install(target, final)
    finally:
        _remove(tmp)


def build_manifest(cache_dir: str, name: str, source: Source) -> dict[str, Any]:
    """Manifest for a freshly placed artifact (sha256 only for files)."""
    path = os.path.join(cache_dir, name)
    summary = stat_summary(path)
    digest = sha256_file(path) if summary["kind"] == "file" else None
    return {
        "name": name,
        "source": source.identity,
        "sha256": digest,
        "placed_at": int(time.time()),
        **summary,
    }


@dataclass
class CacheEntry:
    name: str
    size_bytes: int
    last_used: float


def list_cache(cache_dir: str) -> list[CacheEntry]:
    """Managed artifacts of the cache (those with a manifest), oldest use first."""
    entries = []
    for fname in os.listdir(cache_dir):
        if not fname.endswith(MANIFEST_SUFFIX) or fname.startswith("."):
            continue
        name = fname[: -len(MANIFEST_SUFFIX)]
        # mtime, not atime: reading the manifests (here, for their sizes) would bump atimes.
        last_used = os.stat(os.path.join(cache_dir, fname)).st_mtime
        size = (read_manifest(cache_dir, name) or {}).get("size_bytes")
        entries.append(CacheEntry(name, size if isinstance(size, int) else 0, last_used))
    return sorted(entries, key=lambda e: (e.last_used, e.name))


def plan_eviction(
    entries: list[CacheEntry], keep: str, max_bytes: int, keep_size: int | None = None
) -> list[str]:
    """Names to evict, least recently used first, until managed artifacts fit in `max_bytes`.

    `keep` (the artifact just placed) is never evicted; `keep_size` overrides its recorded size
    (used in check mode, where the new artifact is not placed yet).
    """
    sizes = {e.name: e.size_bytes for e in entries}
    if keep_size is not None:
        sizes[keep] = keep_size
    total = sum(sizes.values())
    evict = []
    for entry in entries:
        if total <= max_bytes:
            break
        if entry.name == keep:
            continue
        evict.append(entry.name)
        total -= entry.size_bytes
    return evict


def remove_artifact(cache_dir: str, name: str) -> None:
    """Remove an artifact and its manifest."""
    _remove(os.path.join(cache_dir, name))
    _remove(manifest_path(cache_dir, name))
