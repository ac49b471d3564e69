#!/usr/bin/env bash
# The whole-swarm stage: the README's first command on the lab, a second site.yml run that
# must change nothing on any host, then behaviour checks from outside the nodes.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root" || exit 1
venv="${AISWARM_VENV:-$root/.venv}"
logs="$root/.ci/logs"
mkdir -p "$logs"

cleanup() {
  if [[ "${AISWARM_KEEP_LAB:-0}" != 1 ]]; then
    "$venv/bin/python" lab/lab.py down
  fi
}
trap cleanup EXIT

t0=$SECONDS
"$venv/bin/python" lab/lab.py up || { echo "lab: bring-up or first site.yml run failed"; exit 1; }
echo "lab: bring-up and first site.yml run took $((SECONDS - t0)) s"

t1=$SECONDS
"$venv/bin/ansible-playbook" -i inventories/lab/hosts.yml site.yml | tee "$logs/site-second-run.log"
rc=${PIPESTATUS[0]}
echo "lab: second site.yml run took $((SECONDS - t1)) s"
[[ $rc -eq 0 ]] || { echo "lab: second site.yml run failed ($rc)"; exit 1; }
"$venv/bin/python" tests/lab/check_recap.py "$logs/site-second-run.log" || exit 1

"$venv/bin/python" -m pytest tests/lab -q -p no:cacheprovider
