#!/usr/bin/python
# Copyright: (c) 2026, aiswarm.swarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to aiswarm.swarm
from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_artifact
short_description: Place a verified model file or snapshot in a node's model cache
version_added: 0.1.0
description:
  - Places one model artifact named O(name) in O(cache_dir) from exactly one source, a pinned
    Hugging Face snapshot (O(hf_repo) + O(revision)), a URL verified against O(sha256), or a
    local path on the node (O(src)).
  - Downloads go to a temporary path in O(cache_dir) and are renamed into place only when
    complete and verified, so a failed or interrupted run never leaves a partial artifact.
  - Free disk space is checked before a download starts (O(size_bytes), or the URL's
    Content-Length) and the module refuses, naming the bytes needed and free, when it cannot fit.
  - A manifest C(<name>.aiswarm-artifact.json) beside the artifact records its source, checksum,
    size and mtime. A later run with the same source compares sizes and mtimes (a file is
    re-hashed only when they differ) and reports no change; a different source replaces it.
  - With O(cache_max_bytes), least-recently-used other artifacts of the cache (by the mtime
    of their manifests, refreshed whenever this module places or verifies them) are evicted
    until the managed artifacts fit. The artifact just placed is never evicted. Files in
    O(cache_dir) without a manifest are neither counted nor touched.
author:
  - aiswarm.swarm maintainers (@aiswarm)
requirements:
  - huggingface_hub (only for O(hf_repo)), on the managed node
extends_documentation_fragment:
  - aiswarm.swarm.attributes
  - aiswarm.swarm.attributes.ALL
options:
  name:
    description:
      - File or directory name of the artifact inside O(cache_dir), for example
        C(qwen2.5-7b-instruct-q4_k_m.gguf) or C(Qwen2.5-7B-Instruct).
      - Must not contain C(/) or start with C(.).
    type: str
    required: true
  cache_dir:
    description:
      - The node's model cache directory. Created (mode C(0755)) when missing.
    type: path
    required: true
  state:
    description:
      - V(present) places and verifies the artifact; V(absent) removes it and its manifest.
    type: str
    choices: [present, absent]
    default: present
  hf_repo:
    description:
      - Hugging Face repository id to download a snapshot of, for example C(Qwen/Qwen2.5-7B-Instruct).
      - Needs O(revision). Mutually exclusive with O(url) and O(src).
    type: str
  revision:
    description:
      - The 40-character commit hash of O(hf_repo) to download. Branch and tag names such as
        C(main) are refused because they move.
    type: str
  hf_allow_patterns:
    description:
      - Only download files of the snapshot matching these glob patterns,
        for example C(["*.json", "*.safetensors"]).
    type: list
    elements: str
  hf_token:
    description:
      - Hugging Face access token for gated or private repositories.
    type: str
  url:
    description:
      - HTTP(S) URL of a single file to download, for example a GGUF file. Needs O(sha256).
      - Mutually exclusive with O(hf_repo) and O(src).
    type: str
  sha256:
    description:
      - Expected sha256 of the file at O(url) (64 hex characters, optional C(sha256:) prefix).
        A mismatch fails the task, naming the expected and actual digests, and places nothing.
    type: str
  src:
    description:
      - Path of a file or directory on the node to copy into the cache.
      - Mutually exclusive with O(url) and O(hf_repo).
    type: path
  size_bytes:
    description:
      - Expected size of the download in bytes, used for the free-space check before it starts.
        For O(url) it overrides the server's Content-Length; for O(hf_repo) it is the only size
        known in advance (without it, no check is made).
    type: int
  timeout:
    description:
      - Socket timeout in seconds for O(url) downloads.
    type: int
    default: 60
  cache_max_bytes:
    description:
      - After placing, evict least-recently-used other artifacts until the managed artifacts of
        O(cache_dir) total at most this many bytes. Unset means no eviction.
    type: int
notes:
  - For O(src) the whole source is hashed on every run to detect a changed source; prefer O(url)
    or O(hf_repo) for very large models.
seealso:
  - module: aiswarm.swarm.openai_endpoint
"""

EXAMPLES = r"""
---
- name: Place the pinned vLLM snapshot in the model cache
  aiswarm.swarm.model_artifact:
    name: "{{ vllm_model_name }}"
    cache_dir: "{{ model_manager_cache_dir }}"
    hf_repo: Qwen/Qwen2.5-7B-Instruct
    revision: "{{ vllm_model_revision }}"  # the 40-hex commit id copied from the model's history
    hf_allow_patterns: ["*.json", "*.safetensors", "tokenizer*"]
    hf_token: "{{ model_manager_hf_token | default(omit) }}"
    size_bytes: 15300000000
    cache_max_bytes: "{{ model_manager_cache_max_bytes }}"
  register: __model_manager_vllm_model
  notify: Restart vllm

- name: Place the llama.cpp fallback GGUF from the mirror, verified
  aiswarm.swarm.model_artifact:
    name: qwen2.5-7b-instruct-q4_k_m.gguf
    cache_dir: /var/lib/aiswarm/models
    url: http://mirror.lab.internal/models/qwen2.5-7b-instruct-q4_k_m.gguf
    sha256: "{{ llamacpp_model_sha256 }}"  # 64 hex characters, published beside the file
  notify: Restart llamacpp

- name: Copy a locally generated tiny GGUF into the lab cache
  aiswarm.swarm.model_artifact:
    name: tiny-llama.gguf
    cache_dir: /var/lib/aiswarm/models
    src: /opt/aiswarm/lab/tiny-llama.gguf

- name: Drop a retired model from the cache
  aiswarm.swarm.model_artifact:
    name: old-model.gguf
    cache_dir: /var/lib/aiswarm/models
    state: absent
"""

RETURN = r"""
path:
  description: Absolute path of the artifact.
  returned: always
  type: str
  sample: /var/lib/aiswarm/models/qwen2.5-7b-instruct-q4_k_m.gguf
size_bytes:
  description:
    - Size of the artifact in bytes (sum of its files for a directory).
    - In check mode, the predicted size when known.
  returned: when O(state=present)
  type: int
  sample: 4683073952
sha256:
  description: sha256 of the artifact when it is a single file, else null.
  returned: when O(state=present)
  type: str
  sample: 0b5cf2bc8e0ac6e3c33e0a3d8f6d5e7a9a1b4c5d6e7f8091a2b3c4d5e6f70819
source:
  description: The source recorded in the manifest.
  returned: when O(state=present)
  type: dict
  sample: {"type": "url", "url": "http://mirror.lab.internal/models/m.gguf", "sha256": "0b5c..."}
evicted:
  description:
    - Names of artifacts evicted (in check mode, that would be evicted) by O(cache_max_bytes).
    - In check mode a new artifact of unknown size (O(url) or O(hf_repo) without O(size_bytes))
      is not counted.
  returned: always
  type: list
  elements: str
  sample: ["old-model.gguf"]
"""

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.aiswarm.swarm.plugins.module_utils import _model_artifact as ma


class ModelArtifact:
    """Plans and applies one artifact's state; every write sits behind `if not check_mode`."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.cache_dir: str = os.path.abspath(self.params["cache_dir"])
        self.name: str = self.params["name"]
        self.path = os.path.join(self.cache_dir, self.name)

    def absent(self) -> dict[str, Any]:
        before = ma.read_manifest(self.cache_dir, self.name) if os.path.isdir(self.cache_dir) else None
        exists = os.path.lexists(self.path) or before is not None
        if exists and not self.check_mode:
            ma.remove_artifact(self.cache_dir, self.name)
        return {
            "changed": exists,
            "path": self.path,
            "evicted": [],
            "diff": {"before": before or {}, "after": {}},
        }

    def present(self) -> dict[str, Any]:
        p = self.params
        source = ma.make_source(
            url=p["url"],
            sha256=p["sha256"],
            hf_repo=p["hf_repo"],
            revision=p["revision"],
            allow_patterns=p["hf_allow_patterns"],
            src=p["src"],
        )
        cache_exists = os.path.isdir(self.cache_dir)
        before = ma.read_manifest(self.cache_dir, self.name) if cache_exists else None
        current = cache_exists and ma.is_current(self.cache_dir, self.name, source)
        if current:
            if not self.check_mode:
                ma.touch_manifest(self.cache_dir, self.name)
            after = before or {}
        elif self.check_mode:
            size = self._known_size(source)
            if cache_exists:
                ma.check_space(self.cache_dir, size, self.name)
            after = {"name": self.name, "source": source.identity}
            if size is not None:
                after["size_bytes"] = size
        else:
            if not cache_exists:
                os.makedirs(self.cache_dir, mode=0o755, exist_ok=True)
            self._place(source)
            after = ma.build_manifest(self.cache_dir, self.name, source)
            ma.write_manifest(self.cache_dir, self.name, after)
        evicted = self._evict(after, cache_exists)
        return {
            "changed": not current or bool(evicted),
            "path": self.path,
            "size_bytes": after.get("size_bytes", self._known_size(source)),
            "sha256": after.get("sha256", source.sha256 or None),
            "source": source.identity,
            "evicted": evicted,
            "diff": {"before": before or {}, "after": after},
        }

    def _known_size(self, source: ma.Source) -> int | None:
        if source.kind == "src":
            return ma.stat_summary(source.src)["size_bytes"]
        return self.params["size_bytes"]

    def _place(self, source: ma.Source) -> None:
        p = self.params
        if source.kind == "url":
            ma.download_url(source.url, source.sha256, self.path, p["size_bytes"], float(p["timeout"]))
        elif source.kind == "hf":
            if not ma.HAS_HUGGINGFACE_HUB:
                self.module.fail_json(
                    msg=missing_required_lib("huggingface_hub"), exception=ma.HUGGINGFACE_HUB_IMPORT_ERROR
                )
            ma.check_space(self.cache_dir, p["size_bytes"], f"{source.hf_repo}@{source.revision}")
            ma.download_hf(
                source.hf_repo,
                source.revision,
                self.path,
                ma.snapshot_download,  # set whenever HAS_HUGGINGFACE_HUB
                allow_patterns=source.allow_patterns,
                token=p["hf_token"],
            )
        else:
            ma.copy_src(source.src, self.path)

    def _evict(self, after: dict[str, Any], cache_exists: bool) -> list[str]:
        max_bytes = self.params["cache_max_bytes"]
        if max_bytes is None or not cache_exists:
            return []
        entries = ma.list_cache(self.cache_dir)
        keep_size = after.get("size_bytes") if self.check_mode else None
        names = ma.plan_eviction(entries, self.name, max_bytes, keep_size)
        if not self.check_mode:
            for name in names:
                ma.remove_artifact(self.cache_dir, name)
        return names


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "cache_dir": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "hf_repo": {"type": "str"},
            "revision": {"type": "str"},
            "hf_allow_patterns": {"type": "list", "elements": "str"},
            "hf_token": {"type": "str", "no_log": True},
            "url": {"type": "str"},
            "sha256": {"type": "str"},
            "src": {"type": "path"},
            "size_bytes": {"type": "int"},
            "timeout": {"type": "int", "default": 60},
            "cache_max_bytes": {"type": "int"},
        },
        mutually_exclusive=[("hf_repo", "url", "src")],
        required_if=[("state", "present", ("hf_repo", "url", "src"), True)],
        required_by={"url": "sha256", "hf_repo": "revision"},
        supports_check_mode=True,
    )
    for option in ("size_bytes", "cache_max_bytes"):
        if module.params[option] is not None and module.params[option] < 0:
            module.fail_json(msg=f"{option} must be a number of bytes >= 0, got {module.params[option]}")
    artifact = ModelArtifact(module)
    try:
        ma.validate_name(artifact.name)
        result = artifact.absent() if module.params["state"] == "absent" else artifact.present()
    except ma.ArtifactError as exc:
        module.fail_json(msg=str(exc), path=artifact.path)
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
