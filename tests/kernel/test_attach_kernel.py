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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import guest_steps  # noqa: E402

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

SCRIPT = guest_steps.BLOCKD + guest_steps.ATTACH + r"""
says_modprobe() {
    blockctl attach disk --server nbd://127.0.0.1:10809 > /tmp/no-module.out 2>&1; rc=$?
    cat /tmp/no-module.out; echo "exit $rc"
    [ $rc -eq 1 ] && grep -q "modprobe nbd" /tmp/no-module.out
}
step says-modprobe says_modprobe
step modprobe-nbd modprobe nbd || abort

step blockd-start start_blockd || abort
step volume-create blockctl volume create disk --size 256MiB || abort

step attach-a attach disk node-a a --device /dev/nbd0 --connections 2 --dead-conn-timeout 90 || abort
step two-connections connections_are 2
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

step write-fsync write_fsync || abort
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
a_broken() { supervisor_exits a 1 5 && grep -q 'was broken' /tmp/attach-a.log; }
step a-supervisor-says-broken a_broken
step attached-broken attached_is /dev/nbd0 broken node-a
umount_a() { umount $MNT || umount -l $MNT; }
step umount-a umount_a

step attach-b attach disk node-b b --device /dev/nbd1 --connections 2 --dead-conn-timeout 90 || abort
step b-reads-fsynced-data sh -c "mount -t ext4 /dev/nbd1 $MNT && cd $MNT && sha256sum -c /tmp/fsynced | tail -3 && test ! -s $MNT/after-break"
umount $MNT
detach_b() { blockctl detach /dev/nbd1 && ! kill -0 $PID_b 2>/dev/null; rc=$?; cat /tmp/attach-b.log; return $rc; }
step detach-b detach_b
step lease-released released
step detach-a blockctl detach /dev/nbd0
step attached-empty empty
step blockd-stop stop_blockd
dump_logs
"""


if __name__ == "__main__":
    guest_steps.run(SCRIPT, STEPS, binaries=["mkfs.ext4", "e2fsck", "curl"])
