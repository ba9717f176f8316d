#!/usr/bin/env python3
"""Durability test 2: a power cut must lose no write that blockd promised was stable.

The simulated disk (a fresh one per cycle, on the same LOWER.img throughout):

    client (python3-libnbd, N connections)
      -> blockd, volume path = MNT/disk                  (stack "file")
                 or /dev/loopN on MNT/disk               (stack "loop")
        -> FUSE (kernel) -> nbdfuse MNT/disk --unix lower.sock
          -> nbdkit --filter=cache cache=writeback cache-min-block-size=4096 file LOWER.img

The disk's volatile write cache is the nbdkit cache filter in writeback mode: writes stay in
the nbdkit process (its cache file is unlinked at start-up) and reach LOWER.img only when an
NBD FLUSH arrives (the filter then writes back every dirty block and fdatasyncs LOWER.img).
nbdfuse turns FUSE_FSYNC into NBD FLUSH.  FUSE (no writeback_cache) forwards every write to
nbdfuse synchronously, so no dirty data hides in the page cache of MNT/disk: the only
volatile layer is the disk's cache.

Stack "file": blockd's fdatasync -> FUSE_FSYNC -> NBD FLUSH; a buffered RWF_DSYNC write ->
generic_write_sync -> FUSE_FSYNC -> NBD FLUSH (checked with a logging nbdkit).  Limitation of
the kernel's FUSE, not of blockd: an *asynchronous O_DIRECT* write with RWF_DSYNC/O_DSYNC
(io_uring or libaio) never sends FUSE_FSYNC, so if blockd ever opens files with O_DIRECT,
FUA writes on this stack would look lost although blockd did everything right.
Stack "loop": the loop driver is a block device with a volatile write cache ("write back",
no FUA); the block layer turns FUA, RWF_DSYNC (buffered or O_DIRECT) and fsync into cache
flushes, which the loop driver executes as vfs_fsync(MNT/disk) -> FUSE_FSYNC -> NBD FLUSH.
It is faithful for every I/O mode and exercises blockd's block-device volumes.
Both stacks run by default (--stack both|file|loop).

Power cut = SIGKILL of that nbdkit: the cache is gone, LOWER.img keeps exactly what was
flushed.  blockd is then SIGKILLed too, the loop device is detached, nbdfuse is unmounted
(fusermount3 -u), and LOWER.img is read directly.  Every write acknowledged with FUA, and
every write acknowledged before a FLUSH that got its reply (on any connection: blockd
advertises CAN_MULTI_CONN), must read back: the block holds that version or a newer one
that was also sent, never an older one.  After each reboot, blockd must also serve exactly
the bytes of LOWER.img.

Control (run first on each stack; the test fails unless it detects loss in every control
cycle): the same cycles with blockd started with --unsafe-ack-without-sync.  Nothing then
ever flushes the simulated disk cache, so promised blocks are lost at the cut.

Exit 0 pass, 1 fail, 77 skip (not root, no /dev/fuse, missing nbdkit/nbdfuse/fusermount3/
losetup).
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import durability_lib as dl  # noqa: E402

nbd = dl.ensure_environment()
fixture = dl.blockd_fixture

VOLUME = "pc"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cycles", type=int, default=20, help="power-cut cycles (default 20)")
    p.add_argument("--control-cycles", type=int, default=3,
                   help="cycles with --unsafe-ack-without-sync that must all detect loss (default 3)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    p.add_argument("--size-mib", type=int, default=16, help="volume size in MiB (default 16)")
    p.add_argument("--threads", type=int, default=3, help="client connections (default 3)")
    p.add_argument("--depth", type=int, default=8,
                   help="requests in flight per connection (default 8; 1 = one at a time)")
    p.add_argument("--min-delay", type=float, default=0.02)
    p.add_argument("--max-delay", type=float, default=1.0)
    p.add_argument("--time-limit", type=float, default=780.0,
                   help="fail if the cycles do not finish within this many seconds")
    p.add_argument("--watchdog", type=float, default=None,
                   help="hard limit: clean up and exit 1 after this many seconds "
                        "(default: time limit + 60)")
    p.add_argument("--stack", choices=["both", "file", "loop"], default="both",
                   help="file: blockd serves the nbdfuse file; loop: blockd serves a loop device "
                        "on that file; both (default): each in turn")
    p.add_argument("--server", choices=["blockd", "nbdkit"], default="blockd",
                   help="harness development only: nbdkit's file plugin in blockd's place")
    return p.parse_args()


def mounted(path):
    """Is `path` a mount point?  (/proc/self/mountinfo: works on a dead FUSE mount too.)"""
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[4].replace("\\040", " ") == path:
                    return True
    except OSError:
        pass
    return False


def run_quiet(args, timeout=15):
    try:
        return subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, text=True)
    except subprocess.TimeoutExpired:
        return None


class Stack:
    """One boot of the simulated machine: disk (nbdkit+cache), nbdfuse, blockd."""

    def __init__(self, workdir, lower, size_mib, unsafe, server_kind, stack_kind):
        self.workdir, self.lower, self.size_mib = workdir, lower, size_mib
        self.unsafe, self.server_kind, self.kind = unsafe, server_kind, stack_kind
        self.loop = None
        self.sock = os.path.join(workdir, "lower.sock")
        self.mnt = os.path.join(workdir, "mnt")
        self.disk = os.path.join(self.mnt, "disk")
        self.cachedir = os.path.join(workdir, "cache")
        self.nbdkit = self.fuse = self.bd = self.dev = None
        os.makedirs(self.mnt, exist_ok=True)
        os.makedirs(self.cachedir, exist_ok=True)

    # --- boot ---------------------------------------------------------------
    def start(self):
        dl.on_cleanup(self.teardown)
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        env = dict(os.environ, TMPDIR=self.cachedir)  # where the cache filter keeps its cache
        self.nbdkit = dl.Proc(
            ["nbdkit", "-f", "--exit-with-parent", "-U", self.sock, "--filter=cache",
             "file", self.lower, "cache=writeback", "cache-min-block-size=4096"],
            "disk-nbdkit", env=env, log_path=os.path.join(self.workdir, "nbdkit.log"))
        if not dl.wait_for(lambda: os.path.exists(self.sock) or not self.nbdkit.alive(), 15):
            raise RuntimeError("nbdkit did not create its socket")
        if not self.nbdkit.alive():
            raise RuntimeError("nbdkit exited:\n" + self.nbdkit.log_tail())
        pidfile = os.path.join(self.workdir, "nbdfuse.pid")
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        self.fuse = dl.Proc(["nbdfuse", "-P", pidfile, self.disk, "--unix", self.sock],
                            "nbdfuse", log_path=os.path.join(self.workdir, "nbdfuse.log"))
        if not dl.wait_for(lambda: os.path.exists(pidfile) or not self.fuse.alive(), 15):
            raise RuntimeError("nbdfuse did not become ready")
        if not self.fuse.alive():
            raise RuntimeError("nbdfuse exited:\n" + self.fuse.log_tail())
        size = os.stat(self.disk).st_size
        if size != self.size_mib << 20:
            raise RuntimeError(f"{self.disk} has size {size}, expected {self.size_mib << 20}")
        self.volume_path = self.disk
        if self.kind == "loop":
            # The loop driver is a block device with a volatile write cache ("write back", no
            # FUA): the block layer turns FUA and fsync into cache flushes, which the loop
            # driver executes as vfs_fsync() on MNT/disk -> FUSE_FSYNC -> NBD FLUSH.
            r = run_quiet(["losetup", "--find", "--show", "--direct-io=off", self.disk])
            if r is None or r.returncode != 0 or not r.stdout.strip().startswith("/dev/loop"):
                raise RuntimeError(f"losetup failed: {r.stdout if r else 'timeout'}")
            self.loop = r.stdout.strip()
            self.volume_path = self.loop
        if self.server_kind == "blockd":
            extra = ["--unsafe-ack-without-sync"] if self.unsafe else []
            self.bd = fixture.Blockd([f"name={VOLUME},path={self.volume_path}"], extra=extra).start()
        else:  # development stand-in: nbdkit's file plugin; fuamode=discard plays "unsafe"
            dsock = os.path.join(self.workdir, "dev.sock")
            if os.path.exists(dsock):
                os.unlink(dsock)
            args = ["nbdkit", "-f", "--exit-with-parent", "-U", dsock]
            if self.unsafe:
                args += ["--filter=fua"]
            args += ["file", self.volume_path] + (["fuamode=discard"] if self.unsafe else [])
            self.dev = dl.Proc(args, "dev-server", log_path=os.path.join(self.workdir, "dev.log"))
            self.dev_sock = dsock
            if not dl.wait_for(lambda: os.path.exists(dsock) or not self.dev.alive(), 15):
                raise RuntimeError("dev server did not start")
        return self

    def connect(self):
        if self.bd is not None:
            return dl.nbd_connect(uri=self.bd.uri(VOLUME))
        return dl.nbd_connect(unix=self.dev_sock)

    # --- power cut ----------------------------------------------------------
    def power_cut(self):
        """SIGKILL the disk (its volatile cache dies with it), then the server."""
        self.nbdkit.kill()
        if self.bd is not None:
            self.bd.kill()
        if self.dev is not None:
            self.dev.kill()

    def teardown(self):
        """Idempotent; safe after any failure.  Stops only the processes started here."""
        problems = []
        if self.nbdkit is not None and self.nbdkit.alive():
            self.nbdkit.kill()
        if self.bd is not None:
            try:
                self.bd.kill()
            except Exception as e:  # noqa: BLE001
                problems.append(f"blockd did not die: {e}")
        if self.dev is not None:
            self.dev.kill()
        if self.loop is not None:
            name = os.path.basename(self.loop)
            attached = lambda: os.path.exists(f"/sys/block/{name}/loop/backing_file")  # noqa: E731
            for _ in range(5):
                run_quiet(["losetup", "-d", self.loop])
                if dl.wait_for(lambda: not attached(), 2):
                    break
            if attached():
                problems.append(f"{self.loop} is still attached")
            else:
                self.loop = None
        if self.fuse is not None:
            if mounted(self.mnt):
                for _ in range(5):
                    run_quiet(["fusermount3", "-u", self.mnt])
                    if not mounted(self.mnt):
                        break
                    time.sleep(0.2)
            if self.fuse.wait(10) is None:
                # nbdfuse would not go: kill it by PID (closing /dev/fuse aborts the mount).
                problems.append("nbdfuse did not exit after unmount; killed")
                self.fuse.kill()
            if mounted(self.mnt):
                run_quiet(["fusermount3", "-u", "-z", self.mnt])
            if mounted(self.mnt):
                problems.append(f"{self.mnt} is still mounted")
        if self.bd is not None and self.bd.proc is not None and self.bd.proc.poll() is None:
            try:  # a blockd stuck on the dead FUSE mount is released by the abort above
                self.bd.kill()
            except Exception as e:  # noqa: BLE001
                problems.append(f"blockd (pid {self.bd.proc.pid}) still alive: {e}")
        for p in (self.nbdkit, self.fuse, self.dev):
            if p is not None:
                p.close_log()
        if not problems:
            dl.off_cleanup(self.teardown)
        return problems

    def server_log_tail(self):
        if self.bd is not None:
            return dl.blockd_log_tail(self.bd)
        return self.dev.log_tail() if self.dev else ""


def power_cycle(stack, tracker, cycle, rng, args):
    """Boot, verify through blockd, write, cut the power, tear down, verify LOWER.img."""
    tracker.new_cycle(cycle)
    info = {"mismatch": []}
    try:
        stack.start()
        # After a reboot the disk cache is empty: blockd must serve exactly LOWER.img.
        h = stack.connect()
        nbd_read, lower_read = dl.nbd_reader(h), dl.file_reader(stack.lower)

        def compare_read(off, n):
            got = nbd_read(off, n)
            want = lower_read(off, n)
            if got != want:
                for i in range(0, n, dl.BS):
                    if got[i:i + dl.BS] != want[i:i + dl.BS]:
                        info["mismatch"].append((off + i) // dl.BS)
            return got
        v_srv, _, _ = dl.check_volume(compare_read, tracker)
        del h
        wl = dl.Workload(nbd, stack.connect, tracker, threads=args.threads, p_fua=0.2,
                         p_flush=0.1, seed=rng.getrandbits(32), max_seconds=30.0,
                         depth=args.depth).start()
        dl.wait_for(lambda: tracker.durable_acks() >= 1 or wl.errors, 10)
        delay = rng.uniform(args.min_delay, args.max_delay)
        time.sleep(delay)
        stack.power_cut()
        info["delay"] = delay
        hung = wl.finish(timeout=20)
        info["fua_only"], info["unpromised"] = tracker.exposure()
        if hung:
            raise RuntimeError(f"client threads did not return after the power cut: {hung}")
        if wl.errors:
            raise RuntimeError(f"workload errors: {wl.errors}\nserver log:\n{stack.server_log_tail()}")
    finally:
        problems = stack.teardown()
    if problems:
        raise RuntimeError("teardown: " + "; ".join(problems))
    v_file, observed, summary = dl.check_volume(dl.file_reader(stack.lower), tracker)
    info["stats"] = dict(tracker.stats)
    info["summary"] = summary
    # What is on LOWER.img now is stable: it becomes the floor (when the cycle was clean).
    if not v_file:
        tracker.adopt(observed)
    return v_srv, v_file, info


def fmt_cycle(label, cycle, info, v_srv, v_file):
    s, c = info["stats"], info["summary"]
    return (f"{label} cycle {cycle:3d}: delay={info['delay']:.3f}s sent={s.get('sent', 0)} "
            f"acked={s.get('acked', 0)} (fua={s.get('acked_fua', 0)}) "
            f"flushes={s.get('flush_acked', 0)}/{s.get('flush_sent', 0)} "
            f"flush-covered-writes={s.get('flush_covered_writes', 0)} "
            f"new-block-promises={s.get('promised_blocks', 0)} "
            f"fua-only-at-cut={info.get('fua_only', 0)} "
            f"promised-blocks-checked={c.get('promised_blocks_checked', 0)} "
            f"newer={c.get('newer_than_promised', 0)} "
            f"violations: via-server={len(v_srv)} in-LOWER={len(v_file)}")


def run_series(label, stack_kind, args, workdir, rng, cycles, unsafe, t0):
    """Returns (per-cycle results, totals, failure string or None)."""
    sub = os.path.join(workdir, label)
    os.makedirs(sub)
    lower = os.path.join(sub, "LOWER.img")
    with open(lower, "wb") as f:
        f.truncate(args.size_mib << 20)
    tracker = dl.Tracker((args.size_mib << 20) // dl.BS, "power")
    results = []
    totals = {"acked": 0, "fua": 0, "flush": 0, "promised_checked": 0, "new_promises": 0,
              "fua_only": 0, "cycles": 0}
    for cycle in range(1, cycles + 1):
        if time.monotonic() - t0 > args.time_limit:
            return results, totals, f"time limit {args.time_limit}s reached in {label} after {cycle - 1} cycles"
        stack = Stack(sub, lower, args.size_mib, unsafe, args.server, stack_kind)
        v_srv, v_file, info = power_cycle(stack, tracker, cycle, rng, args)
        dl.log(fmt_cycle(label, cycle, info, v_srv, v_file))
        totals["cycles"] += 1
        totals["acked"] += info["stats"].get("acked", 0)
        totals["fua"] += info["stats"].get("acked_fua", 0)
        totals["flush"] += info["stats"].get("flush_acked", 0)
        totals["new_promises"] += info["stats"].get("promised_blocks", 0)
        totals["fua_only"] += info.get("fua_only", 0)
        totals["promised_checked"] += info["summary"].get("promised_blocks_checked", 0)
        results.append((v_srv, v_file, info))
        msg = []
        if info["mismatch"]:
            mm = info["mismatch"]
            msg.append(f"{label} cycle {cycle}: after reboot, blockd served {len(mm)} blocks that "
                       f"differ from LOWER.img (first: {mm[:10]})")
        if unsafe:
            if v_file:
                kinds = sorted({v["kind"] for v in v_file})
                dl.log(f"   -> control detected {len(v_file)} violations ({', '.join(kinds)})")
            # Resynchronise with what really survived, so each control cycle stands alone.
            _, observed, _ = dl.check_volume(dl.file_reader(lower), tracker)
            with tracker.lock:
                tracker.floor = [0] * tracker.nblocks
            tracker.adopt(observed)
        else:
            if v_srv:
                msg.append(f"{label} cycle {cycle}: after reboot, blockd served data that lost "
                           f"promised writes:\n" + dl.format_violations(v_srv))
            if v_file:
                msg.append(f"{label} cycle {cycle}: after the power cut, LOWER.img lost writes "
                           f"acknowledged with FUA or covered by a replied FLUSH:\n"
                           + dl.format_violations(v_file))
        if msg:
            dl.log("server log tail:\n" + stack.server_log_tail())
            return results, totals, "\n".join(msg)
    return results, totals, None


def run_stack(stack_kind, args, workdir, rng, t0):
    """Control first (must detect loss), then the real cycles.  Returns a list of failures."""
    failures = []
    dl.log(f"--- stack '{stack_kind}': blockd volume = "
           + ("MNT/disk (the nbdfuse file)" if stack_kind == "file" else "/dev/loopN on MNT/disk"))
    if args.control_cycles > 0:
        label = f"{stack_kind}-control"
        res, _, err = run_series(label, stack_kind, args, workdir, rng, args.control_cycles, True, t0)
        if err:
            return [err]
        vacuous = [i + 1 for i, r in enumerate(res)
                   if r[2]["stats"].get("promised_blocks", 0) == 0]
        detected = sum(1 for r in res if r[1])
        if vacuous:
            failures.append(f"{label}: cycles {vacuous} promised nothing (vacuous)")
        if detected < args.control_cycles:
            failures.append(
                f"{label}: CONTROL NOT DETECTED: with --unsafe-ack-without-sync no promised write "
                f"was lost in {args.control_cycles - detected} of {args.control_cycles} cycles; "
                f"the simulated power cut has no teeth (or the flag does not skip syncing)")
        else:
            dl.log(f"{label}: loss detected in {detected}/{args.control_cycles} cycles "
                   f"({sum(len(r[1]) for r in res)} lost promised blocks)")
        if failures:
            return failures
    label = f"{stack_kind}-power-cut"
    _, totals, err = run_series(label, stack_kind, args, workdir, rng, args.cycles, False, t0)
    dl.log(f"{label} totals: cycles={totals['cycles']} acked writes={totals['acked']} "
           f"(fua={totals['fua']}, flushes replied={totals['flush']}), "
           f"new block promises={totals['new_promises']}, "
           f"FUA-only promises at the cut={totals['fua_only']}, "
           f"promised block checks={totals['promised_checked']}")
    if err:
        failures.append(err)
    elif totals["new_promises"] == 0:
        failures.append(f"{label}: no promised write was ever checked (vacuous run)")
    return failures


def main():
    args = parse_args()
    dl.install_signal_handlers()
    if os.geteuid() != 0:
        fixture.skip("needs root (FUSE mount via nbdfuse, loop devices)")
    if not os.path.exists("/dev/fuse"):
        fixture.skip("/dev/fuse is missing")
    for tool in ("nbdkit", "nbdfuse", "fusermount3", "losetup"):
        if shutil.which(tool) is None:
            fixture.skip(f"{tool} is not installed")
    stacks = ["file", "loop"] if args.stack == "both" else [args.stack]
    if "loop" in stacks and not os.path.exists("/dev/loop-control"):
        if args.stack == "loop":
            fixture.skip("/dev/loop-control is missing")
        dl.log("NOTE: /dev/loop-control is missing: the loop stack is not run")
        stacks.remove("loop")
    if args.server == "blockd":
        dl.require_blockd()
    if args.cycles < 1:
        dl.log("FAIL: --cycles must be >= 1")
        return 1
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    rng = random.Random(seed)
    t0 = time.monotonic()
    dl.log(f"test_power_cut: server={args.server} stacks={','.join(stacks)} cycles={args.cycles} "
           f"control-cycles={args.control_cycles} seed={seed} volume={args.size_mib}MiB "
           f"threads={args.threads} depth={args.depth}")
    failures = []
    with fixture.temp_dir("blockd-powercut-") as workdir:
        watchdog = dl.start_watchdog(args.watchdog or args.time_limit + 60, workdir)
        try:
            for kind in stacks:
                failures += run_stack(kind, args, workdir, rng, t0)
                if failures:
                    break
        finally:
            watchdog.cancel()
    elapsed = time.monotonic() - t0
    dl.log(f"runtime={elapsed:.1f}s seed={seed}")
    if failures:
        for f in failures:
            dl.log("FAIL: " + f)
        return 1
    dl.log("PASS")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        dl.log("FAIL: the test stopped on an error (see the traceback above)")
        sys.exit(1)
