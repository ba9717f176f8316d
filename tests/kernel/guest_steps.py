"""What the blockd kernel tests share: guest shell functions to put in front of a test's
script, and the host side that boots the VM with blockd, blockctl and the tools, prints
the console lines a test wants shown, and checks the expected steps. vm.py stays the
generic harness; this is the blockd-specific layer over it.

    import guest_steps
    SCRIPT = guest_steps.BLOCKD + guest_steps.ATTACH + r'''
    step modprobe-nbd modprobe nbd || abort
    step blockd-start start_blockd || abort
    ...
    '''
    if __name__ == "__main__":
        guest_steps.run(SCRIPT, STEPS, binaries=["mkfs.ext4", "e2fsck", "curl"])

BLOCKD (every test), in the guest shell:

    MNT, /tmp/state, BLOCKD_SERVER   the mount point, blockd's state dir, blockctl's server
    dump_logs                        print blockd's log and every /tmp/attach-*.log
    start_blockd [ARG]...            start blockd (ARGs added) in the background on
                                     127.0.0.1:10809, BLOCKD_PID; wait for its listener line
    connections_are N                exactly N established client connections to blockd
    kill_blockd, stop_blockd         SIGKILL it; SIGTERM it and require exit status 0

ATTACH (the `blockctl attach` tests):

    api ARG...                       curl on blockd's control socket
    abort                            dump_logs, umount $MNT, exit 1
    attach VOLUME HOLDER NAME [ARG]...   `blockctl attach` in the background (PID_NAME);
                                     waits for the device on its stdout (DEV_NAME)
    supervisor_exits NAME RC LINES   its supervisor ends (60 s at most) with status RC
    write_one FILE BYTES             a file in $MNT written with fsync; its checksum
                                     appended to /tmp/fsynced
    write_fsync [N]                  four files of 517 B to 4 MiB, then N small ones
    verify DIR DEVICE                caches dropped, every checksum in /tmp/fsynced holds
    released                         volume "disk"'s lease is free
    empty                            `blockctl attached` lists nothing
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vm  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BLOCKD_BIN = os.environ.get("BLOCKD_BIN", str(REPO / "build" / "server" / "blockd"))
BLOCKCTL_BIN = os.environ.get("BLOCKCTL_BIN",
                              str(Path(BLOCKD_BIN).resolve().parents[1] / "tools" / "blockctl"))

BLOCKD = r"""
MNT=/mnt/disk
mkdir -p /tmp/state $MNT
export BLOCKD_SERVER=unix:///tmp/state/c.sock

dump_logs() {
    echo "=== blockd log"; cat /tmp/blockd.log
    for f in /tmp/attach-*.log; do [ -e "$f" ] || continue; echo "=== $f"; cat $f; done
}

# start_blockd [ARG]...: waits for the contract's listener line, which says the port is
# bound ("catalog ready" comes earlier).
start_blockd() {
    : > /tmp/blockd.log
    blockd --state-dir /tmp/state --control-socket /tmp/state/c.sock \
           --listen 127.0.0.1:10809 "$@" >> /tmp/blockd.log 2>&1 &
    BLOCKD_PID=$!
    i=0
    while ! grep -q 'listening address=127.0.0.1:10809' /tmp/blockd.log; do
        kill -0 $BLOCKD_PID 2>/dev/null || { echo "blockd exited"; cat /tmp/blockd.log; return 1; }
        i=$((i + 1)); [ $i -gt 300 ] && { echo "not ready after 60s"; return 1; }
        sleep 0.2
    done
}
# The kernel's sockets show in /proc/net/tcp like any others.
connections_are() {
    n=$(netstat -tn | awk '$5 == "127.0.0.1:10809" && $6 == "ESTABLISHED"' | wc -l)
    echo "client connections: $n"
    [ "$n" -eq "$1" ] || { netstat -tn; return 1; }
}
kill_blockd() { kill -9 $BLOCKD_PID; wait $BLOCKD_PID 2>/dev/null; echo "killed at $(cut -d' ' -f1 /proc/uptime)"; }
stop_blockd() { kill -TERM $BLOCKD_PID; wait $BLOCKD_PID; rc=$?; echo "blockd exit $rc"; [ $rc -eq 0 ]; }
"""

ATTACH = r"""
api() { curl -sS --unix-socket /tmp/state/c.sock "$@"; }

# Anything that leaves the device unusable ends the run; later steps would only hang.
abort() {
    dump_logs
    umount $MNT 2>/dev/null
    exit 1
}

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
# supervisor_exits NAME RC LINES: attach NAME's supervisor ends within 60 s with status
# RC; the last LINES lines of its log are shown.
supervisor_exits() {
    eval "pid=\$PID_$1"
    i=0
    while kill -0 $pid 2>/dev/null; do
        i=$((i + 1)); [ $i -gt 300 ] && { echo "supervisor still running"; cat /tmp/attach-$1.log; return 1; }
        sleep 0.2
    done
    wait $pid; rc=$?
    tail -$3 /tmp/attach-$1.log; echo "supervisor exit $rc"
    [ $rc -eq $2 ]
}

# Every file is written with fsync (dd conv=fsync); only then is its checksum recorded.
: > /tmp/fsynced
write_one() {
    dd if=/dev/urandom of=$MNT/$1 bs=$2 count=1 conv=fsync 2>/dev/null || return 1
    (cd $MNT && sha256sum $1) >> /tmp/fsynced
}
# ( ) bodies: a subshell, so neither set -e nor cd leaks into the rest of the script.
write_fsync() (
    set -e
    write_one small 517; write_one block 4096; write_one mib 1048576; write_one big 4194304
    i=0; while [ $i -lt ${1:-0} ]; do write_one f$i $((i * 4099 + 1)); i=$((i + 1)); done
    echo "$(wc -l < /tmp/fsynced) files fsynced"
)
# verify DIR DEVICE: what is read must come from blockd, not from this kernel's caches.
verify() (
    blockdev --flushbufs $2 && echo 3 > /proc/sys/vm/drop_caches
    cd $1 && sha256sum -c /tmp/fsynced > /tmp/verify.out 2>&1; rc=$?
    grep -v ': OK$' /tmp/verify.out; echo "$(grep -c ': OK$' /tmp/verify.out) of $(wc -l < /tmp/fsynced) files OK"
    exit $rc
)
released() {
    blockctl lease show disk
    api http://blockd/v1/volumes/disk/lease; echo
    api http://blockd/v1/volumes/disk/lease | grep -q '"state": *"free"'
}
empty() { blockctl attached; [ "$(blockctl attached -o name | wc -l)" -eq 0 ]; }
"""


def main(script: str, steps, binaries, show: str = "MEASURE", strip_show: bool = False) -> int:
    """Boot the VM with blockd, blockctl, /etc/mke2fs.conf, `binaries`, nbd.ko (and ext4
    where it is a module), run `script`, print the console lines starting with `show`
    (without that prefix if `strip_show`), and return vm.report's verdict on `steps`."""
    vm.skip_if_no_qemu()
    for binary in (BLOCKD_BIN, BLOCKCTL_BIN):
        if not Path(binary).is_file():
            print(f"FAIL: {binary} not found (build blockd and blockctl, or set BLOCKD_BIN / BLOCKCTL_BIN)")
            return 1
    kernel = vm.ensure_kernel()
    modules = ["nbd"]
    if kernel.config().get("CONFIG_EXT4_FS") != "y":
        modules.append("ext4")  # with jbd2, mbcache, crc16... via its depends
    result = vm.run_in_vm(
        script,
        binaries=binaries,
        files={"/usr/bin/blockd": BLOCKD_BIN, "/usr/bin/blockctl": BLOCKCTL_BIN,
               "/etc/mke2fs.conf": "/etc/mke2fs.conf"},
        modules=modules,
        kernel=kernel,
        timeout=600,
        memory_mib=1024,
    )
    for line in result.console_text.splitlines():
        if line.startswith(show):
            print(line[len(show):] if strip_show else line)
    return vm.report(result, steps)


def run(script: str, steps, binaries, show: str = "MEASURE", strip_show: bool = False) -> None:
    """main() as a test's whole run: exit 0 pass, 1 fail, 77 only when qemu cannot start."""
    try:
        sys.exit(main(script, steps, binaries, show, strip_show))
    except vm.QemuUnavailable as e:
        print(f"SKIP: {e}", file=sys.stderr)
        sys.exit(vm.SKIP)
    except vm.VmError as e:  # no kernel, a binary missing on the host: a failure
        print(f"FAIL: {e}")
        sys.exit(1)
