#!/usr/bin/python3
"""`blockctl attach` against the kernel's own NBD driver, in a VM booting Debian's cloud
kernel: blockd and blockctl on the guest's loopback. attach with 2 connections (generic
netlink NBD_CMD_CONNECT) → mkfs.ext4 → mount → files written with fsync, checksummed →
read back; blockd SIGKILLed while a writer runs and restarted → the writer sees no I/O
error (the supervisor replaced the dead sockets with NBD_CMD_RECONFIGURE), every fsynced
file verifies, e2fsck -f clean; a second holder is refused; a lease break makes the first
holder's next writes fail and disconnects its device for good; the second holder then
attaches and reads exactly what the first had fsynced; detach releases the lease;
`blockctl attached` is checked at each step.

Exit 0 pass, 1 fail, 77 only when qemu cannot start on this machine."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vm  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BLOCKD = os.environ.get("BLOCKD_BIN", str(REPO / "build" / "server" / "blockd"))
BLOCKCTL = os.environ.get("BLOCKCTL_BIN", str(Path(BLOCKD).resolve().parents[1] / "tools" / "blockctl"))

STEPS = [
    "says-modprobe", "modprobe-nbd", "blockd-start", "volume-create", "attach-a", "two-connections",
    "attached-a", "device-busy", "mkfs-ext4", "mount", "write-fsync", "readback",
    "writer-started", "blockd-sigkill", "blockd-restart", "reconnected", "writer-no-io-error",
    "verify-after-restart", "attached-after-restart", "second-holder-refused",
    "umount", "e2fsck-clean", "mount-again", "write-before-break", "lease-break",
    "a-writes-fail", "a-supervisor-says-broken", "attached-broken", "umount-a",
    "attach-b", "b-reads-fsynced-data", "detach-b", "lease-released", "detach-a",
    "attached-empty", "blockd-stop",
]

SCRIPT = r"""
MNT=/mnt/disk
mkdir -p /tmp/state $MNT
export BLOCKD_SERVER=unix:///tmp/state/c.sock
api() { curl -sS --unix-socket /tmp/state/c.sock "$@"; }

abort() {
    echo "=== blockd log"; cat /tmp/blockd.log
    for f in /tmp/attach-*.log; do echo "=== $f"; cat $f; done
    umount $MNT 2>/dev/null
    exit 1
}

says_modprobe() {
    blockctl attach disk --server nbd://127.0.0.1:10809 > /tmp/no-module.out 2>&1; rc=$?
    cat /tmp/no-module.out; echo "exit $rc"
    [ $rc -eq 1 ] && grep -q "modprobe nbd" /tmp/no-module.out
}
step says-modprobe says_modprobe
step modprobe-nbd modprobe nbd || abort

start_blockd() {
    : > /tmp/blockd.log
    blockd --state-dir /tmp/state --control-socket /tmp/state/c.sock \
           --listen 127.0.0.1:10809 >> /tmp/blockd.log 2>&1 &
    BLOCKD_PID=$!
    i=0
    while ! grep -q 'listening address=127.0.0.1:10809' /tmp/blockd.log; do
        kill -0 $BLOCKD_PID 2>/dev/null || { echo "blockd exited"; cat /tmp/blockd.log; return 1; }
        i=$((i + 1)); [ $i -gt 300 ] && { echo "not ready after 60s"; return 1; }
        sleep 0.2
    done
}
step blockd-start start_blockd || abort
step volume-create blockctl volume create disk --size 256MiB || abort

# attach VOLUME HOLDER DEVICE NAME: the supervisor runs in the background; the device path
# on its stdout says it is attached.
attach() {
    t0=$(cut -d' ' -f1 /proc/uptime)
    blockctl attach $1 --holder $2 --device $3 --connections 2 --timeout 5 --dead-conn-timeout 90 \
        > /tmp/attach-$4.out 2> /tmp/attach-$4.log &
    eval "PID_$4=$!"
    i=0
    while ! grep -q "^$3\$" /tmp/attach-$4.out; do
        eval "kill -0 \$PID_$4" 2>/dev/null || { cat /tmp/attach-$4.log; return 1; }
        i=$((i + 1)); [ $i -gt 300 ] && { echo "not attached after 60s"; return 1; }
        sleep 0.2
    done
    t1=$(cut -d' ' -f1 /proc/uptime)
    cat /tmp/attach-$4.log
    echo "MEASURE attach $4: $(awk "BEGIN {print $t1 - $t0}") s"
}
step attach-a attach disk node-a /dev/nbd0 a || abort
two_conns() {
    n=$(netstat -tn | awk '$5 == "127.0.0.1:10809" && $6 == "ESTABLISHED"' | wc -l)
    echo "client connections: $n"; [ "$n" -eq 2 ]
}
step two-connections two_conns
# attached_is DEVICE STATE [HOLDER]
attached_is() {
    blockctl attached; blockctl attached -o json
    blockctl attached | awk -v d=$1 -v s=$2 -v h=${3:-} '$2 == d && $NF == s && (h == "" || $4 == h) {f=1} END {exit !f}'
}
step attached-a attached_is /dev/nbd0 attached node-a
cat /sys/block/nbd0/backend /sys/block/nbd0/pid
busy() {
    blockctl attach disk --holder node-a --device /dev/nbd0 > /tmp/busy.out 2>&1; rc=$?
    cat /tmp/busy.out; echo "exit $rc"
    [ $rc -eq 1 ] && grep -q "/dev/nbd0 is busy" /tmp/busy.out
}
step device-busy busy

step mkfs-ext4 mkfs.ext4 -F -q /dev/nbd0 || abort
step mount mount -t ext4 /dev/nbd0 $MNT || abort

# Every file is written with fsync (dd conv=fsync); only then is its checksum recorded.
: > /tmp/fsynced
write_one() {
    dd if=/dev/urandom of=$MNT/$1 bs=$2 count=1 conv=fsync 2>/dev/null || return 1
    (cd $MNT && sha256sum $1) >> /tmp/fsynced
}
write_fsync() (
    set -e
    write_one small 517; write_one block 4096; write_one mib 1048576; write_one big 4194304
    echo "$(wc -l < /tmp/fsynced) files fsynced"
)
step write-fsync write_fsync || abort
verify() (
    blockdev --flushbufs $2 && echo 3 > /proc/sys/vm/drop_caches
    cd $1 && sha256sum -c /tmp/fsynced > /tmp/verify.out 2>&1; rc=$?
    grep -v ': OK$' /tmp/verify.out; echo "$(grep -c ': OK$' /tmp/verify.out) of $(wc -l < /tmp/fsynced) files OK"
    exit $rc
)
step readback verify $MNT /dev/nbd0 || abort

# A writer that stops at its first error: it must see none across the restart.
writer() {
    i=0
    while [ ! -e /tmp/stop-writer ]; do
        dd if=/dev/urandom of=$MNT/w$i bs=65536 count=1 conv=fsync 2>/tmp/writer.err ||
            { echo "writer: w$i failed: $(cat /tmp/writer.err)" > /tmp/writer.result; exit 1; }
        (cd $MNT && sha256sum w$i) >> /tmp/fsynced
        i=$((i + 1))
    done
    echo "writer: $i files, no error" > /tmp/writer.result
}
writer &
WRITER=$!
started() { sleep 2; n=$(grep -c ' w[0-9]' /tmp/fsynced); echo "$n files so far"; [ "$n" -gt 0 ]; }
step writer-started started
kill_blockd() { kill -9 $BLOCKD_PID; wait $BLOCKD_PID 2>/dev/null; echo "killed at $(cut -d' ' -f1 /proc/uptime)"; }
step blockd-sigkill kill_blockd
sleep 1
step blockd-restart start_blockd || abort
reconnected() {
    i=0
    while ! grep -q 'reconnected in' /tmp/attach-a.log; do
        i=$((i + 1)); [ $i -gt 600 ] && { cat /tmp/attach-a.log; return 1; }
        sleep 0.1
    done
    grep -E 'died|reconnect|replaced|connections again' /tmp/attach-a.log
    echo "MEASURE $(grep -o 'reconnected in [0-9]* ms' /tmp/attach-a.log | tail -1)"
}
step reconnected reconnected
sleep 3
touch /tmp/stop-writer
wait_writer() { wait $WRITER; rc=$?; cat /tmp/writer.result; [ $rc -eq 0 ]; }
step writer-no-io-error wait_writer
step verify-after-restart verify $MNT /dev/nbd0
step attached-after-restart attached_is /dev/nbd0 attached node-a

refused() {
    blockctl attach disk --holder node-b --device /dev/nbd1 > /tmp/b-refused.out 2>&1; rc=$?
    cat /tmp/b-refused.out; echo "exit $rc"
    [ $rc -eq 1 ] && grep -q 'node-a' /tmp/b-refused.out
}
step second-holder-refused refused

step umount umount $MNT || abort
step e2fsck-clean e2fsck -f -n /dev/nbd0
step mount-again mount -t ext4 /dev/nbd0 $MNT || abort
step write-before-break write_one before-break 65536 || abort
break_lease() { api -X POST -d '{}' http://blockd/v1/volumes/disk/lease/break; echo; }
step lease-break break_lease
a_writes_fail() {
    # The device's next writes fail (EPERM from blockd, then EIO once it is disconnected).
    if dd if=/dev/urandom of=$MNT/after-break bs=65536 count=1 conv=fsync 2>&1; then
        echo "a write after the break succeeded"; return 1
    fi
    echo "write after break failed, as it must"
}
step a-writes-fail a_writes_fail
a_broken() {
    i=0
    while kill -0 $PID_a 2>/dev/null; do
        i=$((i + 1)); [ $i -gt 300 ] && { echo "supervisor still running"; cat /tmp/attach-a.log; return 1; }
        sleep 0.2
    done
    wait $PID_a; rc=$?
    tail -5 /tmp/attach-a.log; echo "supervisor exit $rc"
    [ $rc -eq 1 ] && grep -q 'was broken' /tmp/attach-a.log
}
step a-supervisor-says-broken a_broken
step attached-broken attached_is /dev/nbd0 broken node-a
umount_a() { umount $MNT || umount -l $MNT; }
step umount-a umount_a

step attach-b attach disk node-b /dev/nbd1 b || abort
step b-reads-fsynced-data sh -c "mount -t ext4 /dev/nbd1 $MNT && cd $MNT && sha256sum -c /tmp/fsynced | tail -3 && test ! -s $MNT/after-break"
umount $MNT
detach_b() { blockctl detach /dev/nbd1 && ! kill -0 $PID_b 2>/dev/null; rc=$?; cat /tmp/attach-b.log; return $rc; }
step detach-b detach_b
released() { api http://blockd/v1/volumes/disk/lease; echo; api http://blockd/v1/volumes/disk/lease | grep -q '"state": *"free"'; }
step lease-released released
step detach-a blockctl detach /dev/nbd0
empty() { blockctl attached; [ "$(blockctl attached -o name | wc -l)" -eq 0 ]; }
step attached-empty empty
stop_blockd() { kill -TERM $BLOCKD_PID; wait $BLOCKD_PID; rc=$?; echo "blockd exit $rc"; [ $rc -eq 0 ]; }
step blockd-stop stop_blockd
echo "=== blockd log"; cat /tmp/blockd.log
for f in /tmp/attach-*.log; do echo "=== $f"; cat $f; done
"""


def main() -> int:
    vm.skip_if_no_qemu()
    for binary in (BLOCKD, BLOCKCTL):
        if not Path(binary).is_file():
            print(f"FAIL: {binary} not found (build blockd and blockctl, or set BLOCKD_BIN / BLOCKCTL_BIN)")
            return 1
    kernel = vm.ensure_kernel()
    modules = ["nbd"]
    if kernel.config().get("CONFIG_EXT4_FS") != "y":
        modules.append("ext4")
    result = vm.run_in_vm(
        SCRIPT,
        binaries=["mkfs.ext4", "e2fsck", "curl"],
        files={"/usr/bin/blockd": BLOCKD, "/usr/bin/blockctl": BLOCKCTL, "/etc/mke2fs.conf": "/etc/mke2fs.conf"},
        modules=modules,
        kernel=kernel,
        timeout=600,
        memory_mib=1024,
    )
    for line in result.console_text.splitlines():
        if line.startswith("MEASURE"):
            print(line)
    return vm.report(result, STEPS)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except vm.QemuUnavailable as e:
        print(f"SKIP: {e}", file=sys.stderr)
        sys.exit(vm.SKIP)
    except vm.VmError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
