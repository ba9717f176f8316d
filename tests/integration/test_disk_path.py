#!/usr/bin/env python3
""""Mount it as an ordinary disk": nbdfuse + loop device + ext4 on a blockd export.

Phase A: nbdfuse exposes the export as a file, losetup makes it a block device,
         mkfs.ext4 (its discards become NBD TRIMs), mount, write files and record
         their sha256, umount, `e2fsck -f -n` is clean.
Phase B: everything on the client side is torn down and blockd itself is
         restarted on the same backing file; a fresh nbdfuse + loop device:
         `e2fsck -f -n` clean again, mount, every file has its checksum, umount.
Cleanup (umount, losetup -d, fusermount3 -u, nbdfuse exit) runs even on failure
and on the watchdog timeout. Skips (77) if not root or /dev/fuse is missing.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

fx.use_system_python()
import hashlib  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

MiB = 1 << 20
SIZE = 256 * MiB


def quiet(cmd, timeout=20):
    """Best-effort cleanup command; never raises."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, PATH=fx.SYSTEM_PATH))
        return r.returncode
    except Exception as e:  # noqa: BLE001
        print(f"cleanup: {cmd}: {e}")
        return -1


def is_mountpoint(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1 and fields[1].replace("\\040", " ") == path:
                return True
    return False


class DiskPath:
    """nbdfuse -> loop device -> (optionally) mounted ext4; undo() in reverse order."""

    def __init__(self, workdir, uri, tag):
        self.fuse_dir = os.path.join(workdir, f"fuse-{tag}")
        self.mnt = os.path.join(workdir, f"mnt-{tag}")
        self.pidfile = os.path.join(workdir, f"nbdfuse-{tag}.pid")
        self.uri = uri
        self.proc = None
        self.loop = None
        self.mounted = False
        os.mkdir(self.fuse_dir)
        os.mkdir(self.mnt)

    @property
    def file(self):
        return os.path.join(self.fuse_dir, "nbd")

    def attach(self):
        print(f"$ nbdfuse -P {self.pidfile} {self.fuse_dir} {self.uri} &", flush=True)
        self.proc = subprocess.Popen(["nbdfuse", "-P", self.pidfile, self.fuse_dir, self.uri],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ, PATH=fx.SYSTEM_PATH))
        end = time.monotonic() + 20
        while not os.path.exists(self.pidfile):
            if self.proc.poll() is not None:
                raise fx.TestFailure(f"nbdfuse exited with {self.proc.returncode}: "
                                     f"{self.proc.stdout.read()}")
            if time.monotonic() > end:
                raise fx.TestFailure("nbdfuse did not become ready within 20s")
            time.sleep(0.05)
        size = os.stat(self.file).st_size
        if size != SIZE:
            raise fx.TestFailure(f"nbdfuse file {self.file} has size {size}, expected {SIZE}")
        r = fx.run(["losetup", "--find", "--show", self.file], timeout=30)
        self.loop = r.stdout.strip()
        print(f"     loop device {self.loop}")

    def mount(self):
        fx.run(["mount", "-t", "ext4", self.loop, self.mnt], timeout=60)
        self.mounted = True

    def umount(self):
        fx.run(["umount", self.mnt], timeout=120)
        self.mounted = False

    def undo(self):
        if self.mounted or is_mountpoint(self.mnt):
            if quiet(["umount", self.mnt], timeout=60) != 0:
                quiet(["umount", "-l", self.mnt])
            self.mounted = False
        if self.loop:
            quiet(["losetup", "-d", self.loop])
            self.loop = None
        if self.proc is not None:
            if is_mountpoint(self.fuse_dir) and quiet(["fusermount3", "-u", self.fuse_dir]) != 0:
                quiet(["fusermount3", "-u", "-z", self.fuse_dir])
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                print(f"cleanup: nbdfuse (pid {self.proc.pid}) did not exit; killing it")
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


def write_files(root, rnd):
    sums = {}
    os.makedirs(os.path.join(root, "dir", "sub"))
    sizes = [0, 1, 511, 4096, 65537, 1 * MiB, 3 * MiB + 123, 16 * MiB]
    sizes += [rnd.randrange(1, 256 * 1024) for _ in range(40)]
    for i, n in enumerate(sizes):
        rel = os.path.join("dir" if i % 3 == 0 else "dir/sub" if i % 3 == 1 else "", f"f{i:03d}")
        data = rnd.randbytes(n)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        sums[rel] = hashlib.sha256(data).hexdigest()
    return sums


def check_files(c, root, sums, label):
    bad = []
    for rel, want in sums.items():
        try:
            with open(os.path.join(root, rel), "rb") as f:
                got = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:
            got = str(e)
        if got != want:
            bad.append(rel)
    c.ok(not bad, f"{label}: all {len(sums)} files have their sha256", f"wrong: {bad[:10]}")


def fsck(c, loop, label):
    r = fx.run(["e2fsck", "-f", "-n", loop], timeout=120, check=False)
    c.ok(r.returncode == 0, f"{label}: e2fsck -f -n is clean",
         f"rc={r.returncode}\n{r.stdout}\n{r.stderr}")


def body(c):
    if os.geteuid() != 0:
        fx.skip("needs root (losetup, mount)")
    if not os.path.exists("/dev/fuse"):
        fx.skip("/dev/fuse is missing")
    if not os.path.exists("/dev/loop-control"):
        fx.skip("no loop device support (/dev/loop-control missing)")
    fx.require_tools("nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck", "mount", "umount")

    seed = int(os.environ.get("BLOCKD_TEST_SEED", str(int(time.time()))))
    rnd = random.Random(seed)
    print(f"seed {seed}")
    with fx.temp_dir() as d:
        backing = os.path.join(d, "disk.img")
        spec = [f"name=disk,path={backing},size=256MiB"]
        paths = []

        def cleanup():
            for p in reversed(paths):
                p.undo()
        fx.on_timeout(cleanup)
        try:
            # --- phase A -----------------------------------------------------
            with fx.Blockd(spec) as b:
                a = DiskPath(d, b.uri("disk"), "a")
                paths.append(a)
                try:     # the client stack goes away before blockd is stopped
                    a.attach()
                    fx.run(["mkfs.ext4", "-F", "-q", "-L", "blockdtest", a.loop], timeout=120)
                    c.ok(True, "mkfs.ext4 on the loop device over nbdfuse")
                    a.mount()
                    c.ok(True, "mount ext4")
                    sums = write_files(a.mnt, rnd)
                    check_files(c, a.mnt, sums, "phase A, before umount")
                    a.umount()
                    c.ok(True, "umount")
                    fsck(c, a.loop, "phase A")
                finally:
                    a.undo()
                c.ok(not is_mountpoint(a.fuse_dir), "phase A: nbdfuse unmounted cleanly")
                rc = b.stop()
                c.eq(rc, 0, "blockd exits 0 on SIGTERM")
            with open(backing, "rb") as f:
                f.seek(1024 + 56)        # ext4 superblock magic
                c.eq(f.read(2), b"\x53\xef", "the backing file holds an ext4 superblock")

            # --- phase B: fresh client stack, restarted blockd --------------------
            with fx.Blockd(spec) as b:
                p = DiskPath(d, b.uri("disk"), "b")
                paths.append(p)
                try:
                    p.attach()
                    fsck(c, p.loop, "phase B (after blockd restart)")
                    p.mount()
                    check_files(c, p.mnt, sums, "phase B, after remount")
                    p.umount()
                    fsck(c, p.loop, "phase B, after the second umount")
                finally:
                    p.undo()
                rc = b.stop()
                c.eq(rc, 0, "blockd exits 0 on SIGTERM (phase B)")
        finally:
            cleanup()
            leftovers = [x for p in paths for x in (p.mnt, p.fuse_dir) if is_mountpoint(x)]
            c.ok(not leftovers, "cleanup: no mounts left behind", f"{leftovers}")


if __name__ == "__main__":
    fx.test_main(body, timeout=240)
