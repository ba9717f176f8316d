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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import guest_steps  # noqa: E402

STEPS = [
    "modprobe-nbd", "blockd-start", "volume-create", "attach-ioctl", "log-says-ioctl", "two-connections",
    "attached-ioctl", "sysfs-pid-is-supervisor-thread", "device-busy", "second-holder-refused",
    "mkfs-ext4", "mount", "write-fsync", "umount", "e2fsck-clean", "mount-again", "verify", "umount-again",
    "next-free-device", "detach-other", "detach", "supervisor-exit-0", "lease-released", "attached-empty",
    "attach-auto-is-netlink", "detach-netlink",
    "attach-ioctl-again", "blockd-sigkill", "supervisor-says-failed", "attached-failed", "writes-fail",
    "blockd-restart", "detach-failed", "lease-released-after-failure", "attached-empty-at-end", "blockd-stop",
]

SCRIPT = guest_steps.BLOCKD + guest_steps.ATTACH + r"""
step modprobe-nbd modprobe nbd || abort

step blockd-start start_blockd || abort
volumes() { blockctl volume create disk --size 256MiB && blockctl volume create other --size 64MiB; }
step volume-create volumes || abort

step attach-ioctl attach disk node-a a --interface ioctl --connections 2 || abort
says_ioctl() {
    grep -q 'using the ioctl interface' /tmp/attach-a.log && grep -q 'over ioctl (lost connections are not replaced)' /tmp/attach-a.log &&
        [ "$DEV_a" = /dev/nbd0 ]
}
step log-says-ioctl says_ioctl
step two-connections connections_are 2
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
step write-fsync write_fsync 20 || abort
step umount umount $MNT || abort
step e2fsck-clean e2fsck -f -n /dev/nbd0
step mount-again mount -t ext4 /dev/nbd0 $MNT || abort
step verify verify $MNT /dev/nbd0
step umount-again umount $MNT || abort

# nbd0 is taken: the next ioctl attach without --device takes the first device whose
# /sys/block/nbdN/pid is absent.
next_free() { attach other node-a o --interface ioctl && [ "$DEV_o" = /dev/nbd1 ]; }
step next-free-device next_free
detach_other() { blockctl detach /dev/nbd1 && ! kill -0 $PID_o 2>/dev/null; }
step detach-other detach_other
step detach blockctl detach /dev/nbd0
step supervisor-exit-0 supervisor_exits a 0 3
step lease-released released
step attached-empty empty

# For comparison: the same attach through netlink (the default where the family exists).
auto_netlink() { attach other node-a n --connections 2 && grep -q 'using the netlink interface' /tmp/attach-n.log; }
step attach-auto-is-netlink auto_netlink
detach_n() { blockctl detach $DEV_n && ! kill -0 $PID_n 2>/dev/null; }
step detach-netlink detach_n

# The limitation, shown: ioctl cannot replace a connection, so a blockd restart ends the device.
step attach-ioctl-again attach disk node-a f --interface ioctl || abort
step blockd-sigkill kill_blockd
failed() {
    supervisor_exits f 1 4 && grep -q 'every connection of /dev/nbd0 to the server was lost' /tmp/attach-f.log &&
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
step blockd-stop stop_blockd
dump_logs
"""


if __name__ == "__main__":
    guest_steps.run(SCRIPT, STEPS, binaries=["mkfs.ext4", "e2fsck", "curl"])
