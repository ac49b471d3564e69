#!/usr/bin/env bash
# ansible-test sanity on the collection. ansible-test needs the collection at
# .../ansible_collections/aiswarm/swarm, so the tracked files are copied into such a tree.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/aiswarm/swarm"
mkdir -p "$dest"
git -C "$root" ls-files -z --cached --others --exclude-standard | (cd "$root" && xargs -0 cp --parents -t "$dest" 2>/dev/null || true)
cd "$dest"
# Only the Python the nodes and the controller run (3.11); --venv installs each test's own
# pinned requirements (pylint, voluptuous, ...) into ansible-test's cached virtualenvs.
ansible-test sanity --venv --python 3.11 --color no "$@"
