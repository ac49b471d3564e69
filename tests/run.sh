#!/usr/bin/env bash
# Run every test of the project, stage by stage, timing each, and finish with one line
# "tests: N passed, N failed". `make test` calls this; `.ci/run` calls `make test`.
#
#   tests/run.sh                 all stages
#   tests/run.sh lint unit       only the named stages
#
# Stages: lint sanity unit build arch molecule lab
#   arch: what the gateway's roles install exists for arm64 (tests/arch/check_arm64.py; needs
#         PyPI and the Debian mirror, fails without them)
# Environment: AISWARM_KEEP_LAB=1 leaves the lab running after the lab stage;
#              AISWARM_MOLECULE_SCENARIOS="common redis" limits the Molecule stage.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1
venv="${AISWARM_VENV:-$root/.venv}"
export PATH="$venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$root/.collections"
export PY_COLORS=0 ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1
logs="$root/.ci/logs"
mkdir -p "$logs"

all_stages=(lint sanity unit build arch molecule lab)
stages=("$@")
[[ ${#stages[@]} -eq 0 ]] && stages=("${all_stages[@]}")

stage_lint() {
  yamllint -s . &&
    ruff check . &&
    ruff format --check . &&
    python tests/lint/check_argument_specs.py &&
    ansible-lint --profile production --offline
}

stage_sanity() {
  bash tests/sanity.sh
}

stage_unit() {
  python -m pytest tests/unit -q -p no:cacheprovider
}

stage_build() {
  local out
  out="$(mktemp -d)"
  ansible-galaxy collection build --force --output-path "$out" . &&
    ls "$out"/aiswarm-swarm-*.tar.gz &&
    ansible-doc -l aiswarm.swarm &&
    ansible-doc -t role -l aiswarm.swarm &&
    ansible-doc -t lookup aiswarm.swarm.role_argument_spec >/dev/null
  local rc=$?
  rm -rf "$out"
  return $rc
}

# The gateway node is arm64: every pin and Debian package its roles install must exist for it.
stage_arch() {
  python tests/arch/check_arm64.py
}

stage_molecule() {
  local scenarios rc=0
  if [[ -n "${AISWARM_MOLECULE_SCENARIOS:-}" ]]; then
    read -ra scenarios <<<"$AISWARM_MOLECULE_SCENARIOS"
  else
    mapfile -t scenarios < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -n1 basename | sort)
  fi
  for scenario in "${scenarios[@]}"; do
    local t0=$SECONDS
    if molecule test -s "$scenario"; then
      echo "molecule: $scenario passed in $((SECONDS - t0)) s"
    else
      echo "molecule: $scenario FAILED after $((SECONDS - t0)) s"
      rc=1
    fi
  done
  return $rc
}

stage_lab() {
  bash tests/lab/run.sh
}

declare -A results durations
failed=0
for stage in "${stages[@]}"; do
  if ! declare -F "stage_$stage" >/dev/null; then
    echo "tests/run.sh: unknown stage '$stage' (stages: ${all_stages[*]})" >&2
    exit 2
  fi
  echo "=== stage $stage ==="
  t0=$SECONDS
  if "stage_$stage" 2>&1 | tee "$logs/$stage.log"; then
    results[$stage]=passed
  else
    results[$stage]=FAILED
    failed=$((failed + 1))
  fi
  durations[$stage]=$((SECONDS - t0))
  echo "=== stage $stage ${results[$stage]} in ${durations[$stage]} s (log: .ci/logs/$stage.log) ==="
done

echo
echo "stage      result   seconds"
for stage in "${stages[@]}"; do
  printf '%-10s %-8s %7s\n' "$stage" "${results[$stage]}" "${durations[$stage]}"
done
echo "tests: $((${#stages[@]} - failed)) passed, $failed failed"
[[ $failed -eq 0 ]]
