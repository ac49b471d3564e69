#!/usr/bin/env bash
# Build the lab's systemd node image locally: no container registry is reachable here,
# so the root filesystem comes from debootstrap and is imported as a Docker image.
#
#   lab/build-image.sh [--force]
#
# Environment:
#   AISWARM_NODE_IMAGE   image tag (default aiswarm/node:bookworm)
#   AISWARM_DEB_MIRROR   Debian mirror debootstrap uses (default http://deb.debian.org/debian)
#   AISWARM_EXTRA_CA_DIR folder of extra CA certificates (*.crt) trusted inside the image
#                        (default /usr/local/share/ca-certificates)
set -euo pipefail

image="${AISWARM_NODE_IMAGE:-aiswarm/node:bookworm}"
mirror="${AISWARM_DEB_MIRROR:-http://deb.debian.org/debian}"
ca_dir="${AISWARM_EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"
force=0
[[ "${1:-}" == "--force" ]] && force=1

die() { echo "build-image: $*" >&2; exit 1; }

command -v docker >/dev/null || die "the docker client is missing: run lab/bootstrap.sh first"
docker info >/dev/null 2>&1 || die "no Docker engine answers: run lab/bootstrap.sh first"

if [[ $force -eq 0 ]] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "build-image: $image already exists (use --force to rebuild)"
  exit 0
fi

[[ $EUID -eq 0 ]] || die "debootstrap needs root: run as root"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y debootstrap"

rootfs="$(mktemp -d /var/tmp/aiswarm-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

echo "build-image: debootstrap bookworm from $mirror into $rootfs"
debootstrap --variant=minbase \
  --include=python3,python3-apt,systemd,systemd-sysv,dbus,iproute2,sudo,ca-certificates,procps,iputils-ping,curl,gnupg,locales \
  bookworm "$rootfs" "$mirror" >/dev/null

# Trust the same extra CA certificates as the host (the TLS proxy's CA, corporate CAs).
if compgen -G "$ca_dir/*.crt" >/dev/null; then
  cp "$ca_dir"/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null
fi

# A container has no consoles, udev or kernel to manage: mask what only fails there.
for unit in getty@tty1.service console-getty.service systemd-udevd.service \
  systemd-udev-trigger.service systemd-modules-load.service systemd-remount-fs.service \
  sys-kernel-debug.mount sys-kernel-tracing.mount dev-hugepages.mount systemd-firstboot.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
echo 'aiswarm-node' > "$rootfs/etc/hostname"
: > "$rootfs/etc/machine-id"
# No package lists and no stale caches: the first apt run of a role must refresh them.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
# Ansible's apt cache_valid_time reads the lists folder's mtime: make it old.
touch -d '2000-01-01' "$rootfs/var/lib/apt/lists"

echo "build-image: importing $image"
tar -C "$rootfs" -c . | docker import \
  -c 'CMD ["/lib/systemd/systemd"]' \
  -c 'ENV container=docker' \
  - "$image" >/dev/null
echo "build-image: $image ready"
