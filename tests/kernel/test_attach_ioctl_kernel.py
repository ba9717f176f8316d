#!/usr/bin/python3
"""`blockctl attach --interface ioctl` against the kernel's own NBD driver, in a VM booting
Debian's cloud kernel: the classic ioctl interface (NBD_SET_SOCK per connection, NBD_DO_IT
on the supervisor's own thread), the fallback for kernels without the generic netlink
family "nbd". blockd and blockctl on the guest's loopback.

attach forced to ioctl with 2 connections (the log says so; the first device without
/sys/block/nbdN/pid; the pid there is a thread of the supervisor) → a busy device and a
second holder are refused → mkfs.ext4 → mount → files written with fsync, checksummed →
umount → e2fsck -f clean → mount again, caches dropped, checksums verify → detach
releases the lease; the next ioctl attach picks the next free device while nbd0 is
taken; the same attach without --interface uses netlink (timed, for comparison). Then
the documented limitation: blockd SIGKILLed under an ioctl attachment → the supervisor
says the device failed (no reconnect possible) and exits 1, `blockctl attached` says
"failed", writes to the device fail; after blockd is back, detach releases the lease.

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
    "modprobe-nbd", "blockd-start", "volume-create", "attach-ioctl", "log-says-ioctl", "two-connections",
    "attached-ioctl", "sysfs-pid-is-supervisor-thread", "device-busy", "second-holder-refused",
    "mkfs-ext4", "mount", "write-fsync", "umount", "e2fsck-clean", "mount-again", "verify", "umount-again",
    "next-free-device", "detach-other", "detach", "supervisor-exit-0", "lease-released", "attached-empty",
    "attach-auto-is-netlink", "detach-netlink",
    "attach-ioctl-again", "blockd-sigkill", "supervisor-says-failed", "attached-failed", "writes-fail",
    "blockd-restart", "detach-failed", "lease-released-after-failure", "attached-empty-at-end", "blockd-stop",
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
volumes() { blockctl volume create disk --size 256MiB && blockctl volume create other --size 64MiB; }
step volume-create volumes || abort

# attach VOLUME HOLDER NAME [ARG]...: the supervisor runs in the background; the device
# path on its stdout says it is attached. DEV_NAME is that device.
attach() {
    vol=$1; holder=$2; name=$3; shift 3
    t0=$(cut -d' ' -f1 /proc/uptime)
    blockctl attach $vol --holder $holder --timeout 5 "$@" > /tmp/attach-$name.out 2> /tmp/attach-$name.log &
    eval "PID_$name=$!"
    i=0
    while ! grep -q '^/dev/nbd[0-9]*$' /tmp/attach-$name.out; do
        eval "kill -0 \$PID_$name" 2>/dev/null || { cat /tmp/attach-$name.log; return 1; }
        i=$((i + 1)); [ $i -gt 300 ] && { echo "not attached after 60s"; return 1; }
        sleep 0.2
    done
    t1=$(cut -d' ' -f1 /proc/uptime)
    eval "DEV_$name=$(cat /tmp/attach-$name.out)"
    cat /tmp/attach-$name.log
    echo "MEASURE attach $name ($*): $(awk "BEGIN {print $t1 - $t0}") s in the shell," \
         "blockctl's own: $(grep -o 'in [0-9]* ms over [a-z]*' /tmp/attach-$name.log)"
}
step attach-ioctl attach disk node-a a --interface ioctl --connections 2 || abort
says_ioctl() {
    grep -q 'using the ioctl interface' /tmp/attach-a.log && grep -q 'over ioctl (lost connections are not replaced)' /tmp/attach-a.log &&
        [ "$DEV_a" = /dev/nbd0 ]
}
step log-says-ioctl says_ioctl
two_conns() {
    n=$(netstat -tn | awk '$5 == "127.0.0.1:10809" && $6 == "ESTABLISHED"' | wc -l)
    echo "client connections: $n"; [ "$n" -eq 2 ]
}
step two-connections two_conns
# attached_is DEVICE INTERFACE STATE HOLDER
attached_is() {
    blockctl attached; blockctl attached -o json
    blockctl attached | awk -v d=$1 -v i=$2 -v s=$3 -v h=$4 '$2 == d && $(NF-1) == i && $NF == s && $4 == h {f=1} END {exit !f}'
}
attached_ioctl() {
    attached_is /dev/nbd0 ioctl attached node-a || return 1
    blockctl attached | grep -q '^ioctl: lost connections are not replaced' || return 1
    blockctl attached -o json | grep -q '"interface": "ioctl", "replacesConnections": false'
}
step attached-ioctl attached_ioctl
# NBD_DO_IT runs on a thread of the supervisor: /sys/block/nbd0/pid names that thread.
pid_is_thread() {
    t=$(cat /sys/block/nbd0/pid); echo "sysfs pid $t, supervisor $PID_a"; ls /proc/$PID_a/task
    [ -d /proc/$PID_a/task/$t ] && [ "$t" != "$PID_a" ]
}
step sysfs-pid-is-supervisor-thread pid_is_thread
busy() {
    blockctl attach other --holder node-a --interface ioctl --device /dev/nbd0 > /tmp/busy.out 2>&1; rc=$?
    cat /tmp/busy.out; echo "exit $rc"
    [ $rc -eq 1 ] && grep -q "/dev/nbd0 is busy" /tmp/busy.out
}
step device-busy busy
refused() {
    blockctl attach disk --holder node-b --interface ioctl > /tmp/b-refused.out 2>&1; rc=$?
    cat /tmp/b-refused.out; echo "exit $rc"
    [ $rc -eq 1 ] && grep -q 'held for writing by "node-a"' /tmp/b-refused.out
}
step second-holder-refused refused

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
    i=0; while [ $i -lt 20 ]; do write_one f$i $((i * 4099 + 1)); i=$((i + 1)); done
    echo "$(wc -l < /tmp/fsynced) files fsynced"
)
step write-fsync write_fsync || abort
step umount umount $MNT || abort
step e2fsck-clean e2fsck -f -n /dev/nbd0
step mount-again mount -t ext4 /dev/nbd0 $MNT || abort
verify() (
    blockdev --flushbufs /dev/nbd0 && echo 3 > /proc/sys/vm/drop_caches
    cd $MNT && sha256sum -c /tmp/fsynced > /tmp/verify.out 2>&1; rc=$?
    grep -v ': OK$' /tmp/verify.out; echo "$(grep -c ': OK$' /tmp/verify.out) of $(wc -l < /tmp/fsynced) files OK"
    exit $rc
)
step verify verify
step umount-again umount $MNT || abort

# nbd0 is taken: the next ioctl attach without --device takes the first device whose
# /sys/block/nbdN/pid is absent.
next_free() { attach other node-a o --interface ioctl && [ "$DEV_o" = /dev/nbd1 ]; }
step next-free-device next_free
detach_other() { blockctl detach /dev/nbd1 && ! kill -0 $PID_o 2>/dev/null; }
step detach-other detach_other
step detach blockctl detach /dev/nbd0
exit0() { wait $PID_a; rc=$?; tail -3 /tmp/attach-a.log; echo "supervisor exit $rc"; [ $rc -eq 0 ]; }
step supervisor-exit-0 exit0
released() {
    blockctl lease show disk
    api http://blockd/v1/volumes/disk/lease; echo
    api http://blockd/v1/volumes/disk/lease | grep -q '"state": *"free"'
}
step lease-released released
empty() { blockctl attached; [ "$(blockctl attached -o name | wc -l)" -eq 0 ]; }
step attached-empty empty

# For comparison: the same attach through netlink (the default where the family exists).
auto_netlink() { attach other node-a n --connections 2 && grep -q 'using the netlink interface' /tmp/attach-n.log; }
step attach-auto-is-netlink auto_netlink
detach_n() { blockctl detach $DEV_n && ! kill -0 $PID_n 2>/dev/null; }
step detach-netlink detach_n

# The limitation, shown: ioctl cannot replace a connection, so a blockd restart ends the device.
step attach-ioctl-again attach disk node-a f --interface ioctl || abort
kill_blockd() { kill -9 $BLOCKD_PID; wait $BLOCKD_PID 2>/dev/null; echo "killed at $(cut -d' ' -f1 /proc/uptime)"; }
step blockd-sigkill kill_blockd
failed() {
    i=0
    while kill -0 $PID_f 2>/dev/null; do
        i=$((i + 1)); [ $i -gt 300 ] && { echo "supervisor still running"; cat /tmp/attach-f.log; return 1; }
        sleep 0.2
    done
    wait $PID_f; rc=$?
    tail -4 /tmp/attach-f.log; echo "supervisor exit $rc"
    [ $rc -eq 1 ] && grep -q 'every connection of /dev/nbd0 to the server was lost' /tmp/attach-f.log &&
        grep -q 'ioctl interface cannot give the kernel new connections' /tmp/attach-f.log
}
step supervisor-says-failed failed
step attached-failed attached_is /dev/nbd0 ioctl failed node-a
writes_fail() {
    if dd if=/dev/zero of=/dev/nbd0 bs=4096 count=1 conv=fsync 2>&1; then
        echo "a write to the ended device succeeded"; return 1
    fi
    echo "write failed, as it must"
}
step writes-fail writes_fail
step blockd-restart start_blockd || abort
step detach-failed blockctl detach /dev/nbd0
step lease-released-after-failure released
step attached-empty-at-end empty
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
