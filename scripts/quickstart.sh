#!/usr/bin/env bash
# Quick start, as root on a fresh Debian 12 machine: installs the dependencies, builds
# blockd, and runs it in the foreground serving a 1 GiB demo volume. Ctrl-C stops it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

bash "$here/scripts/install-deps.sh"
bash "$here/scripts/build.sh" "$here/build"

mkdir -p /var/lib/blockd
port=${BLOCKD_PORT:-10809}
cat <<MSG

blockd is starting with a 1 GiB sparse demo volume, /var/lib/blockd/demo.img, on port $port.
Connect from another terminal:
  nbdinfo nbd://localhost:$port/demo
  nbdsh -u nbd://localhost:$port/demo -c 'h.pwrite(b"hello", 0); print(h.pread(5, 0))'
  qemu-img info nbd://localhost:$port/demo
  nbd-client localhost $port /dev/nbd0 -N demo     (needs the kernel nbd module)
  fio --ioengine=nbd --uri=nbd://localhost:$port/demo --rw=randread --bs=4k --size=1g --name=demo --runtime=10 --time_based
Stop it with Ctrl-C (or SIGTERM): it finishes in-flight requests, flushes, and exits 0.

MSG
exec "$here/build/server/blockd" --listen "[::]:$port" \
  --volume "name=demo,path=/var/lib/blockd/demo.img,size=1GiB,description=blockd demo volume"
