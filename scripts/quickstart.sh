#!/usr/bin/env bash
# Quick start, as root on a fresh Debian 12 machine: installs the dependencies, builds
# blockd and blockctl, starts blockd in the foreground with its catalog in
# /var/lib/blockd, and creates a 1 GiB demo volume with blockctl (once: the catalog keeps
# it for the next time). Ctrl-C stops blockd gracefully.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

bash "$here/scripts/install-deps.sh"
bash "$here/scripts/build.sh" "$here/build"

blockd=$here/build/server/blockd
blockctl=$here/build/tools/blockctl
port=${BLOCKD_PORT:-10809}
socket=/run/blockd/control.sock
export BLOCKD_SERVER=unix://$socket

"$blockd" --listen "[::]:$port" --state-dir /var/lib/blockd --control-socket "$socket" &
pid=$!
# Ctrl-C or SIGTERM reach blockd, which drains, flushes and exits 0.
trap 'kill -TERM "$pid" 2>/dev/null' INT TERM

for _ in $(seq 100); do
  [ -S "$socket" ] && "$blockctl" status >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { wait "$pid"; exit $?; }
  sleep 0.1
done
if ! "$blockctl" volume show demo >/dev/null 2>&1; then
  "$blockctl" volume create demo --size 1GiB --description "blockd demo volume" --label app=demo
fi

cat <<MSG

blockd is serving the 1 GiB demo volume 'demo' on port $port (catalog in /var/lib/blockd).
From another terminal:
  blockctl volume list                         (BLOCKD_SERVER=$BLOCKD_SERVER)
  nbdinfo nbd://localhost:$port/demo
  nbdsh -u nbd://localhost:$port/demo -c 'h.pwrite(b"hello", 0); print(h.pread(5, 0))'
  qemu-img info nbd://localhost:$port/demo
  nbd-client localhost $port /dev/nbd0 -N demo     (needs the kernel nbd module)
  fio --ioengine=nbd --uri=nbd://localhost:$port/demo --rw=randread --bs=4k --size=1g --name=demo --runtime=10 --time_based
  curl --unix-socket $socket http://localhost/v1/volumes
Stop it with Ctrl-C (or SIGTERM): it finishes in-flight requests, flushes, and exits 0.

MSG
set +e
wait "$pid"
status=$?
# The first wait returns when the trap fires; wait again for blockd's own exit code.
if kill -0 "$pid" 2>/dev/null; then wait "$pid"; status=$?; fi
exit $status
