#!/usr/bin/python3
"""The kernel's own NBD driver against blockd: inside a VM booting Debian's cloud kernel,
stock nbd-client (3.24) connects /dev/nbd0 to blockd with two connections; ext4 is made,
mounted, written, synced, unmounted, read back from the server (caches dropped), checked
by e2fsck, and the device is disconnected. blockd and the client share the guest's
loopback; the guest has no network device.

Then `nbd-client -C 4`, which names no holder, gets the lease rules by its address: the
lease is held by "127.0.0.1" with 4 connections (one lease, four sessions), a second
holder's `blockctl attach` is refused naming that holder, ext4 works on it; after
`nbd-client -d` the lease has no connection and is kept for that address's reconnect for
blockd's --lease-grace (a stock client cannot release it), then it is free and another
holder can take it.

Exit 0 pass, 1 fail, 77 only when qemu cannot start on this machine."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import guest_steps  # noqa: E402

STEPS = [
    "ext4-in-kernel", "modprobe-nbd", "blockd-start", "nbd-client-connect", "device-size",
    "two-connections", "mkfs-ext4", "mount", "write-files", "sync", "umount", "drop-caches",
    "mount-again", "verify-checksums", "find-extent", "umount-again",
    "control-corruption-detected", "e2fsck", "nbd-client-disconnect",
    "device-gone", "backing-file-e2fsck",
    "c4-connect", "c4-four-connections", "c4-lease-by-address", "c4-second-holder-refused", "c4-mkfs",
    "c4-mount", "c4-write", "c4-umount", "c4-verify", "c4-e2fsck", "c4-disconnect", "c4-lease-in-grace",
    "c4-lease-free-after-grace", "c4-other-holder-admitted", "blockd-stop",
]

SCRIPT = guest_steps.BLOCKD + r"""
SIZE=268435456

# Anything that leaves the device unusable ends the run; later steps would only hang.
abort() {
    dump_logs
    umount $MNT 2>/dev/null; nbd-client -d /dev/nbd0 2>/dev/null
    [ -n "${BLOCKD_PID:-}" ] && kill $BLOCKD_PID 2>/dev/null
    exit 1
}

have_ext4() { grep -qw ext4 /proc/filesystems || modprobe ext4; grep -w ext4 /proc/filesystems; }
step ext4-in-kernel have_ext4 || abort
step modprobe-nbd modprobe nbd || abort

# A short lease grace, so that the lease an anonymous client leaves behind lapses within
# the test (default 120 s).
step blockd-start start_blockd --lease-grace 5 --volume name=disk,path=/tmp/disk.img,size=256MiB || abort
cat /tmp/blockd.log

step nbd-client-connect nbd-client 127.0.0.1 10809 /dev/nbd0 -N disk -C 2 || abort
size_is() { s=$(blockdev --getsize64 /dev/nbd0); echo "size $s"; [ "$s" = "$1" ]; }
step device-size size_is $SIZE || abort
step two-connections connections_are 2

step mkfs-ext4 mkfs.ext4 -F /dev/nbd0 || abort
step mount mount -t ext4 /dev/nbd0 $MNT || abort

# ( ) bodies: a subshell, so neither set -e nor cd leaks into the rest of the script.
write_files() (
    set -e
    head -c 1 /dev/urandom > $MNT/one-byte
    head -c 4096 /dev/urandom > $MNT/one-block
    dd if=/dev/urandom of=$MNT/one-mib bs=1M count=1 2>/dev/null
    dd if=/dev/urandom of=$MNT/sixteen-mib bs=1M count=16 2>/dev/null
    mkdir $MNT/many
    i=0
    while [ $i -lt 100 ]; do head -c $((i * 517 + 1)) /dev/urandom > $MNT/many/f$i; i=$((i + 1)); done
    # A file with a hole, written past the 128 MiB mark.
    dd if=/dev/urandom of=$MNT/sparse bs=64k count=4 seek=2048 2>/dev/null
    cd $MNT && find . -type f | sort | xargs sha256sum > /tmp/sums
    echo "$(wc -l < /tmp/sums) files checksummed"; df $MNT
)
step write-files write_files || abort
step sync sync || abort
step umount umount $MNT || abort
# The second mount must read from blockd, not from this kernel's caches.
drop_caches() { blockdev --flushbufs /dev/nbd0 && echo 3 > /proc/sys/vm/drop_caches; }
step drop-caches drop_caches
step mount-again mount -t ext4 -o ro /dev/nbd0 $MNT || abort
verify() (
    cd $MNT && sha256sum -c /tmp/sums > /tmp/verify.out; rc=$?
    grep -v ': OK$' /tmp/verify.out; echo "$(grep -c ': OK$' /tmp/verify.out) files OK"
    exit $rc
)
step verify-checksums verify
# Where the 16 MiB file's first extent lies on the device, for the control below.
extent() {
    filefrag -v $MNT/sixteen-mib > /tmp/extent.out || return 1
    cat /tmp/extent.out
    bs=$(sed -n 's/.*blocks of \([0-9]*\) bytes.*/\1/p' /tmp/extent.out)
    phys=$(awk '$1 == "0:" {print $4}' /tmp/extent.out | tr -d .)
    [ -n "$bs" ] && [ -n "$phys" ] && echo "$bs $phys" > /tmp/extent
}
step find-extent extent
step umount-again umount $MNT || abort
# Control: change 4 KiB of that file in blockd's backing file behind the kernel's back.
# A read that really goes through blockd must now fail the checksum, and only for it.
control() (
    read bs phys < /tmp/extent || exit 1
    blockdev --flushbufs /dev/nbd0 && echo 3 > /proc/sys/vm/drop_caches
    head -c 4096 /dev/zero | tr '\0' 'X' |
        dd of=/tmp/disk.img bs=$bs seek=$((phys + 8)) conv=notrunc 2>/dev/null || exit 1
    mount -t ext4 -o ro /dev/nbd0 $MNT || exit 1
    cd $MNT; sha256sum -c /tmp/sums > /tmp/control.out 2>&1; cd /
    umount $MNT
    cat /tmp/control.out | grep -v ': OK$'
    [ "$(grep -c ': FAILED' /tmp/control.out)" = 1 ] &&
        grep -q '^./sixteen-mib: FAILED' /tmp/control.out
)
step control-corruption-detected control
step e2fsck e2fsck -f -n /dev/nbd0
step nbd-client-disconnect nbd-client -d /dev/nbd0 || abort
gone() {
    i=0
    while [ "$(blockdev --getsize64 /dev/nbd0 2>/dev/null || echo 0)" != 0 ]; do
        i=$((i + 1)); [ $i -gt 50 ] && return 1; sleep 0.2
    done
}
step device-gone gone
# What the kernel wrote went through blockd into its backing file.
step backing-file-e2fsck e2fsck -f -n /tmp/disk.img

# nbd-client -C 4 names no holder (export "disk"): blockd's lease admission uses the
# client's address, so all four connections are sessions of one lease of "127.0.0.1".
step c4-connect nbd-client 127.0.0.1 10809 /dev/nbd1 -N disk -C 4 || abort
step c4-four-connections connections_are 4
# lease_row FIELD: from `blockctl lease show disk` (VOLUME STATE HOLDER MODE GENERATION
# CONNECTIONS HELD EXPIRES), the row of holder 127.0.0.1.
lease_row() { blockctl lease show disk | awk -v f=$1 '$1 == "disk" && $3 == "127.0.0.1" {print $f}'; }
by_address() {
    blockctl lease show disk | sed 's/^/SHOW /'
    [ "$(lease_row 2)" = write ] && [ "$(lease_row 4)" = rw ] && [ "$(lease_row 6)" = 4 ]
}
step c4-lease-by-address by_address
# The volume comes from blockd's --volume (not the catalog the control API manages), so
# the second holder goes straight to NBD: admission at NBD_OPT_GO refuses it.
refused() {
    blockctl attach disk --server nbd://127.0.0.1:10809 --holder other --device /dev/nbd2 > /tmp/refused.out 2>&1
    rc=$?
    sed 's/^/SHOW /' /tmp/refused.out; echo "exit $rc"
    [ $rc -eq 1 ] && grep -q 'volume "disk" is held for writing by "127.0.0.1"' /tmp/refused.out &&
        grep -q '4 connections' /tmp/refused.out
}
step c4-second-holder-refused refused
step c4-mkfs mkfs.ext4 -F -q /dev/nbd1 || abort
step c4-mount mount -t ext4 /dev/nbd1 $MNT || abort
c4_write() (
    set -e
    dd if=/dev/urandom of=$MNT/four bs=1M count=8 2>/dev/null
    i=0; while [ $i -lt 40 ]; do head -c $((i * 1031 + 1)) /dev/urandom > $MNT/g$i; i=$((i + 1)); done
    sync
    cd $MNT && find . -type f | sort | xargs sha256sum > /tmp/sums4
    echo "$(wc -l < /tmp/sums4) files checksummed"
)
step c4-write c4_write || abort
step c4-umount umount $MNT || abort
c4_verify() (
    blockdev --flushbufs /dev/nbd1 && echo 3 > /proc/sys/vm/drop_caches
    mount -t ext4 -o ro /dev/nbd1 $MNT || exit 1
    cd $MNT; sha256sum -c /tmp/sums4 > /tmp/verify4.out; rc=$?; cd /
    umount $MNT
    grep -v ': OK$' /tmp/verify4.out; echo "$(grep -c ': OK$' /tmp/verify4.out) files OK"
    exit $rc
)
step c4-verify c4_verify
step c4-e2fsck e2fsck -f -n /dev/nbd1
step c4-disconnect nbd-client -d /dev/nbd1 || abort
# A stock client cannot release: its last connection closing starts the grace period, in
# which only 127.0.0.1 is admitted.
in_grace() {
    i=0
    while [ "$(lease_row 6)" != 0 ]; do
        i=$((i + 1)); [ $i -gt 20 ] && { blockctl lease show disk; return 1; }
        sleep 0.2
    done
    blockctl lease show disk | sed 's/^/SHOW /'
    lease_row 8 | grep -q '^in'
}
step c4-lease-in-grace in_grace
free_after_grace() {
    i=0
    while [ -n "$(lease_row 3)" ]; do
        i=$((i + 1)); [ $i -gt 60 ] && { blockctl lease show disk; return 1; }
        sleep 0.5
    done
    blockctl lease show disk
}
step c4-lease-free-after-grace free_after_grace
other_admitted() { blockctl lease acquire disk --holder other && blockctl lease release disk --holder other; }
step c4-other-holder-admitted other_admitted
step blockd-stop stop_blockd
dump_logs
"""


if __name__ == "__main__":
    guest_steps.run(SCRIPT, STEPS, binaries=["nbd-client", "mkfs.ext4", "e2fsck", "filefrag"],
                    show="SHOW ", strip_show=True)
