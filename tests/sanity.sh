#!/usr/bin/env bash
# ansible-test sanity on the collection. ansible-test needs the collection at
# .../ansible_collections/aiswarm/swarm, so the tracked files are copied into such a tree.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/aiswarm/swarm"
mkdir -p "$dest"
# Tracked and new (not ignored) files; a tracked file deleted in the work tree is skipped.
git -C "$root" ls-files -z --cached --others --exclude-standard |
  tar -C "$root" --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -C "$dest" -xf -
cd "$dest"

# ansible-test bootstraps pip in its virtualenvs with a get-pip script it downloads from a host
# that is not reachable here. It looks in its cache first, so put a stand-in there: the pinned
# pip wheel from PyPI, run the way get-pip runs its embedded copy.
# ansible-core 2.19's ansible-test bootstraps pip 24.2 (it names the version when it differs).
pip_version="${AISWARM_ANSIBLE_TEST_PIP:-24.2}"
cache="$HOME/.ansible/test/cache"
shim="$cache/get_pip_${pip_version//./_}.py"
if [[ ! -f "$shim" ]]; then
  mkdir -p "$cache"
  pip download --quiet --no-deps --dest "$cache" "pip==$pip_version"
  cat >"$shim" <<PY
# Stand-in for get-pip.py $pip_version (written by aiswarm.swarm tests/sanity.sh): runs pip
# from its PyPI wheel to install the requested packages, as get-pip does with its own copy.
import sys
sys.path.insert(0, "$cache/pip-$pip_version-py3-none-any.whl")
from pip._internal.cli.main import main
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall", *args]))
PY
fi

# Only the Python the nodes and the controller run (3.11); --venv installs each test's own
# pinned requirements (pylint, voluptuous, ...) into ansible-test's cached virtualenvs.
ansible-test sanity --venv --python 3.11 --color no "$@"
