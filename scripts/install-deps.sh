#!/usr/bin/env bash
# Installs everything blockd needs to build and to run its whole test suite, from
# Debian 12's archive only. Idempotent. Run as root.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (apt-get install needs it)" >&2
  exit 1
fi

packages=(
  # build
  build-essential cmake ninja-build pkg-config
  libboost1.81-dev            # Asio 1.81; never libboost-dev (1.74): it lacks what we use and conflicts
  liburing-dev libspdlog-dev libfmt-dev libprotobuf-dev protobuf-compiler
  libgtest-dev libgmock-dev libcli11-dev libtomlplusplus-dev libnl-genl-3-dev libsystemd-dev
  # independent NBD clients and peers that judge blockd in the tests and benchmarks
  nbdkit libnbd-bin python3-libnbd nbd-client nbd-server fio qemu-utils
  # the disk path: nbdfuse -> losetup -> mkfs.ext4 -> mount
  fuse3 e2fsprogs util-linux python3
  # the control API is driven with curl --unix-socket in the tests and the README
  curl
  # promtool validates /metrics in the tests (the package's server is not started)
  prometheus
  # kernel tests (tests/kernel): a TCG VM boots Debian's cloud kernel (fetched with
  # apt-get download) for its nbd.ko; busybox-static is the guest's userland, ldd
  # (libc-bin) and strip (binutils) pack host binaries into the initramfs
  qemu-system-x86 busybox-static binutils libc-bin
  # packaging tests (tests/integration/test_systemd_units.py): systemd-analyze verify and
  # security, systemd-tmpfiles (systemd); the man pages are linted with mandoc -T lint;
  # python3-seccomp loads blockd.service's SystemCallFilter= around a test blockd
  systemd mandoc python3-seccomp
)

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
