#!/usr/bin/env bash
# Put Prometheus' promtool and Alertmanager's amtool into the project's virtualenv, so that the
# tests can check and unit-test the alert rules (promtool check rules / promtool test rules)
# and the Alertmanager configuration (amtool check-config) without installing either service.
#   - Debian's `prometheus` and `prometheus-alertmanager` packages are fetched with
#     `apt-get download` (no root needed) into a cache:
#     ${AISWARM_TOOLS_CACHE:-/var/cache/aiswarm/tools}, or ~/.cache/aiswarm/tools when that is
#     not writable;
#   - usr/bin/promtool and usr/bin/amtool are unpacked with `dpkg-deb -x` and installed into
#     <venv>/bin (venv: ${AISWARM_VENV:-<repo>/.venv});
#   - nothing is downloaded or copied when the installed binaries come from the package version
#     apt offers (recorded in <venv>/bin/.aiswarm-prom-tools).
# It says what it did; anything it cannot do it names and exits 1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${AISWARM_VENV:-$root/.venv}"
bin="$venv/bin"
stamp="$bin/.aiswarm-prom-tools"
# package -> the binary taken from it
declare -A tools=([prometheus]=promtool [prometheus-alertmanager]=amtool)

say() { echo "fetch-prom-tools: $*"; }
die() { echo "fetch-prom-tools: $*" >&2; exit 1; }

for cmd in apt-get apt-cache dpkg-deb; do
  command -v "$cmd" >/dev/null 2>&1 ||
    die "$cmd is missing: this script needs a Debian host (or install promtool and amtool into $bin yourself)"
done

writable_dir() { mkdir -p "$1" 2>/dev/null && [[ -w "$1" ]]; }
cache="${AISWARM_TOOLS_CACHE:-/var/cache/aiswarm/tools}"
if ! writable_dir "$cache"; then
  fallback="${XDG_CACHE_HOME:-$HOME/.cache}/aiswarm/tools"
  writable_dir "$fallback" || die "neither $cache nor $fallback is writable: set AISWARM_TOOLS_CACHE to a writable folder"
  say "$cache is not writable, caching in $fallback"
  cache="$fallback"
fi
writable_dir "$bin" || die "cannot write to $bin: set AISWARM_VENV to the virtualenv to install into"

# The version apt offers for a package, or nothing when apt does not know it.
candidate() {
  apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }'
}

# The cached .deb of a package at a version (apt-get download writes an epoch's ':' as %3a).
cached_deb() {
  local file
  file="$cache/${1}_${2//:/%3a}_$(dpkg --print-architecture).deb"
  [[ -s "$file" ]] && echo "$file"
}

wanted=""
for pkg in prometheus prometheus-alertmanager; do
  version="$(candidate "$pkg")"
  [[ -n "$version" ]] ||
    die "apt knows no candidate for '$pkg': run 'apt-get update' (as root) so that apt lists Debian's packages"
  wanted+="$pkg=$version "
done
wanted="${wanted% }"

installed_all() {
  local tool
  for tool in "${tools[@]}"; do
    [[ -x "$bin/$tool" ]] || return 1
  done
}
if installed_all && [[ "$(cat "$stamp" 2>/dev/null)" == "$wanted" ]]; then
  say "promtool and amtool in $bin are up to date ($wanted); nothing to do"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for pkg in prometheus prometheus-alertmanager; do
  tool="${tools[$pkg]}"
  version="$(candidate "$pkg")"
  deb="$(cached_deb "$pkg" "$version" || true)"
  if [[ -z "$deb" ]]; then
    say "downloading $pkg $version into $cache"
    # As root, apt would hand the download to its sandbox user, who cannot write here.
    sandbox=()
    [[ $EUID -eq 0 ]] && sandbox=(-o APT::Sandbox::User=root)
    (cd "$cache" && apt-get download -qq "${sandbox[@]}" "$pkg=$version") >"$work/apt.log" 2>&1 ||
      die "apt-get download $pkg=$version failed: $(tail -n 3 "$work/apt.log")"
    deb="$(cached_deb "$pkg" "$version")" || die "apt-get download left no $pkg $version package in $cache"
  else
    say "using the cached $(basename "$deb")"
  fi
  dpkg-deb -x "$deb" "$work/$pkg" || die "cannot unpack $deb: remove it from the cache and run this again"
  [[ -x "$work/$pkg/usr/bin/$tool" ]] || die "$deb has no usr/bin/$tool"
  install -m 0755 "$work/$pkg/usr/bin/$tool" "$bin/$tool.new"
  mv -f "$bin/$tool.new" "$bin/$tool"
  "$bin/$tool" --version >/dev/null 2>&1 || die "$bin/$tool does not run on this machine"
  say "installed $bin/$tool from $pkg $version"
done
echo "$wanted" >"$stamp"
