#!/usr/bin/env python3
"""Durability test 1: blockd process crash (SIGKILL) must lose no acknowledged write.

Each cycle:
  1. start blockd (tests/integration/blockd_fixture.py) on the same file-backed volume;
  2. read the whole volume through blockd and check it (what the last crash left must be
     served back);
  3. run a multi-connection write workload of versioned, self-describing 4 KiB blocks
     (plain, FUA and FLUSH mixed), and SIGKILL blockd after a random delay;
  4. read the backing file directly and check it: every acknowledged write must be there
     (the block holds that version, or a newer one that was also sent).  A process crash
     keeps the kernel page cache, so no sync is needed for this promise: it only fails if
     blockd acknowledges before the write reached the kernel (a private cache, a reply
     sent before the io_uring completion, a write to the wrong offset...).

Controls (run automatically; the test fails if a control is NOT detected):
  * checker control: after a middle cycle, roll one promised block back to an older valid
    version, zero another, flip a byte in a third, in the backing file; both the file check
    and the check through a restarted blockd must report exactly those three blocks.
    Then the blocks are restored and the run goes on.
  * lossy-server control: the same workload/crash/check loop against a server that really
    loses acknowledged writes on a process crash (nbdkit --filter=cache cache=unsafe: writes
    are acknowledged from the process's private cache), on a separate image; the checker
    must report lost writes.

Exit 0 pass, 1 fail, 77 skip.
"""
import argparse
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import durability_lib as dl  # noqa: E402

nbd = dl.ensure_environment()
fixture = dl.blockd_fixture

VOLUME = "crash"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cycles", type=int, default=20, help="crash cycles (default 20)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    p.add_argument("--size-mib", type=int, default=16, help="volume size in MiB (default 16)")
    p.add_argument("--threads", type=int, default=4, help="client connections (default 4)")
    p.add_argument("--depth", type=int, default=8,
                   help="requests in flight per connection (default 8; 1 = one at a time)")
    p.add_argument("--min-delay", type=float, default=0.02)
    p.add_argument("--max-delay", type=float, default=1.0)
    p.add_argument("--time-limit", type=float, default=780.0,
                   help="fail if the cycles do not finish within this many seconds")
    p.add_argument("--watchdog", type=float, default=None,
                   help="hard limit: clean up and exit 1 after this many seconds "
                        "(default: time limit + 60)")
    p.add_argument("--control-cycles", type=int, default=2, help="lossy-server control cycles")
    p.add_argument("--server", choices=["blockd", "nbdkit"], default="blockd",
                   help="harness development only: nbdkit's file plugin in blockd's place")
    return p.parse_args()


# --------------------------------------------------------------------------- servers
class BlockdServer:
    """blockd via the project fixture; SIGKILL through the fixture (by PID)."""

    def __init__(self, img, size_mib):
        self.spec = f"name={VOLUME},path={img},size={size_mib}MiB"
        self.bd = None

    def start(self):
        dl.on_cleanup(self.stop)
        self.bd = fixture.Blockd([self.spec]).start()
        return self

    def connect(self):
        return dl.nbd_connect(uri=self.bd.uri(VOLUME))

    def crash(self):
        self.bd.kill()  # SIGKILL + wait
        dl.off_cleanup(self.stop)

    def stop(self):
        if self.bd is not None:
            try:
                self.bd.stop(timeout=15)
            except RuntimeError:
                pass
            finally:
                self.bd.kill()
        dl.off_cleanup(self.stop)

    def log_tail(self):
        return dl.blockd_log_tail(self.bd)


class NbdkitServer:
    """nbdkit serving the file on a Unix socket (dev stand-in, and the lossy control)."""

    def __init__(self, img, workdir, filters=(), params=(), tag="nbdkit"):
        self.img, self.workdir, self.filters, self.params, self.tag = img, workdir, filters, params, tag
        self.sock = os.path.join(workdir, f"{tag}.sock")
        self.p = None

    def start(self):
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        args = ["nbdkit", "-f", "--exit-with-parent", "-U", self.sock]
        args += [f"--filter={f}" for f in self.filters]
        args += ["file", self.img] + list(self.params)
        env = dict(os.environ, TMPDIR=self.workdir)
        dl.on_cleanup(self.stop)
        self.p = dl.Proc(args, self.tag, env=env, log_path=os.path.join(self.workdir, f"{self.tag}.log"))
        if not dl.wait_for(lambda: os.path.exists(self.sock) or not self.p.alive(), 15):
            raise RuntimeError(f"{self.tag} did not create its socket")
        if not self.p.alive():
            raise RuntimeError(f"{self.tag} exited: {self.p.log_tail()}")
        return self

    def connect(self):
        return dl.nbd_connect(unix=self.sock)

    def crash(self):
        self.p.kill()
        dl.off_cleanup(self.stop)

    def stop(self):
        if self.p is not None:
            self.p.stop()
        dl.off_cleanup(self.stop)

    def log_tail(self):
        return self.p.log_tail() if self.p else ""


# --------------------------------------------------------------------------- one cycle
def crash_cycle(server, tracker, cycle, rng, args, img, label):
    """Start, verify through the server, write, SIGKILL, verify the file.

    Returns (violations_through_server, violations_in_file, info).
    """
    tracker.new_cycle(cycle)
    server.start()
    info = {}
    try:
        # What the previous crash left must be served back.
        h = server.connect()
        v_srv, _, _ = dl.check_volume(dl.nbd_reader(h), tracker)
        del h
        wl = dl.Workload(nbd, server.connect, tracker, threads=args.threads, p_fua=0.15,
                         p_flush=0.05, seed=rng.getrandbits(32), max_seconds=30.0,
                         depth=args.depth).start()
        # The crash comes at a random moment, once the run has at least one acknowledgement.
        dl.wait_for(lambda: tracker.durable_acks() >= 1 or wl.errors, 10)
        delay = rng.uniform(args.min_delay, args.max_delay)
        time.sleep(delay)
        t_kill = time.monotonic()
        server.crash()
        info["delay"] = delay
        hung = wl.finish(timeout=20)
        if hung:
            raise RuntimeError(f"{label}: client threads did not return after the crash: {hung}")
        if wl.errors:
            raise RuntimeError(f"{label}: workload errors: {wl.errors}")
        info["kill_to_join"] = time.monotonic() - t_kill
    except BaseException:
        server.stop()
        raise
    time.sleep(0.1)  # let any write the dead process had in flight land (or not)
    v_file, observed, summary = dl.check_volume(dl.file_reader(img), tracker)
    info["stats"] = dict(tracker.stats)
    info["summary"] = summary
    if not v_file:
        tracker.adopt(observed)
    return v_srv, v_file, info


def fmt_cycle(label, cycle, info, v_srv, v_file):
    s, c = info["stats"], info["summary"]
    return (f"{label} cycle {cycle:3d}: delay={info['delay']:.3f}s sent={s.get('sent', 0)} "
            f"acked={s.get('acked', 0)} (fua={s.get('acked_fua', 0)}) flushes={s.get('flush_acked', 0)} "
            f"new-block-promises={s.get('promised_blocks', 0)} "
            f"promised-blocks-checked={c.get('promised_blocks_checked', 0)} "
            f"newer={c.get('newer_than_promised', 0)} "
            f"violations: via-server={len(v_srv)} in-file={len(v_file)}")


# --------------------------------------------------------------------------- controls
def tamper_control(img, tracker, make_server):
    """Corrupt three promised blocks in the file; both checks must report exactly them."""
    rng = random.Random(tracker.run_id)
    with tracker.lock:
        floor = list(tracker.floor)
        sent = [sorted(s) for s in tracker.sent]
    promised = [b for b in range(tracker.nblocks) if floor[b]]
    with_older = [b for b in promised if any(s < floor[b] for s in sent[b])]
    if len(promised) < 3 or not with_older:
        return False, "not enough promised blocks to tamper with"
    a = rng.choice(with_older)
    rest = [b for b in promised if b != a]
    bz, bc = rng.sample(rest, 2)
    expected = {a: "rolled-back", bz: "lost", bc: "corrupt"}
    with open(img, "r+b") as f:
        originals = {}
        for b in expected:
            f.seek(b * dl.BS)
            originals[b] = f.read(dl.BS)
        older = max(s for s in sent[a] if s < floor[a])
        f.seek(a * dl.BS)
        f.write(dl.make_block(tracker.run_id, a, older))
        f.seek(bz * dl.BS)
        f.write(dl.ZERO_BLOCK)
        bad = bytearray(originals[bc])
        bad[100] ^= 0x01
        f.seek(bc * dl.BS)
        f.write(bytes(bad))
    problems = []
    try:
        v_file, _, _ = dl.check_volume(dl.file_reader(img), tracker)
        got = {v["block"]: v["kind"] for v in v_file}
        if got != expected:
            problems.append(f"file check reported {got}, expected {expected}")
        server = make_server()
        server.start()
        try:
            h = server.connect()
            v_srv, _, _ = dl.check_volume(dl.nbd_reader(h), tracker)
            del h
        finally:
            server.stop()
        got = {v["block"]: v["kind"] for v in v_srv}
        if got != expected:
            problems.append(f"check through the server reported {got}, expected {expected}")
    finally:
        with open(img, "r+b") as f:
            for b, data in originals.items():
                f.seek(b * dl.BS)
                f.write(data)
    v_after, _, _ = dl.check_volume(dl.file_reader(img), tracker)
    if v_after:
        problems.append("file not clean after restoring the tampered blocks:\n"
                        + dl.format_violations(v_after))
    detail = (f"rolled back block {a} (seq {floor[a]} -> {older}), zeroed block {bz}, "
              f"flipped a byte in block {bc}")
    return not problems, detail + ("" if not problems else "; " + "; ".join(problems))


def lossy_control(args, workdir, rng):
    """The same loop against a server that loses acknowledged writes on a crash."""
    img = os.path.join(workdir, "lossy.img")
    with open(img, "wb") as f:
        f.truncate(args.size_mib << 20)
    tracker = dl.Tracker((args.size_mib << 20) // dl.BS, "crash")
    server = NbdkitServer(img, workdir, filters=["cache"], params=["cache=unsafe"], tag="lossy")
    detected, lines = 0, []
    for cycle in range(1, args.control_cycles + 1):
        v_srv, v_file, info = crash_cycle(server, tracker, cycle, rng, args, img, "lossy-control")
        lines.append(fmt_cycle("lossy-control", cycle, info, v_srv, v_file))
        if v_file:
            detected += 1
            kinds = sorted({v["kind"] for v in v_file})
            lines.append(f"   -> detected {len(v_file)} violations ({', '.join(kinds)})")
        # The lossy server's own losses are the point; resynchronise the floors with reality.
        _, observed, _ = dl.check_volume(dl.file_reader(img), tracker)
        with tracker.lock:
            tracker.floor = [0] * tracker.nblocks
        tracker.adopt(observed)
    return detected, lines


# --------------------------------------------------------------------------- main
def main():
    args = parse_args()
    dl.install_signal_handlers()
    if args.server == "blockd":
        dl.require_blockd()
    if args.cycles < 1:
        dl.log("FAIL: --cycles must be >= 1")
        return 1
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    rng = random.Random(seed)
    t0 = time.monotonic()
    dl.log(f"test_crash: server={args.server} cycles={args.cycles} seed={seed} "
           f"volume={args.size_mib}MiB threads={args.threads} depth={args.depth}")
    failures = []
    with fixture.temp_dir("blockd-crash-") as workdir:
        watchdog = dl.start_watchdog(args.watchdog or args.time_limit + 60, workdir)
        img = os.path.join(workdir, "volume.img")
        nblocks = (args.size_mib << 20) // dl.BS
        tracker = dl.Tracker(nblocks, "crash")

        def make_server():
            if args.server == "blockd":
                return BlockdServer(img, args.size_mib)
            if not os.path.exists(img):
                with open(img, "wb") as f:
                    f.truncate(args.size_mib << 20)
            return NbdkitServer(img, workdir, tag="dev-server")

        server = None
        totals = {"acked": 0, "promised_checked": 0, "fua": 0, "flush": 0}
        control_at = max(1, args.cycles // 2)
        tamper_done = False
        try:
            for cycle in range(1, args.cycles + 1):
                if time.monotonic() - t0 > args.time_limit:
                    failures.append(f"time limit {args.time_limit}s reached after {cycle - 1} cycles")
                    break
                server = make_server()
                v_srv, v_file, info = crash_cycle(server, tracker, cycle, rng, args, img, "crash")
                dl.log(fmt_cycle("crash", cycle, info, v_srv, v_file))
                totals["acked"] += info["stats"].get("acked", 0)
                totals["fua"] += info["stats"].get("acked_fua", 0)
                totals["flush"] += info["stats"].get("flush_acked", 0)
                totals["promised_checked"] += info["summary"].get("promised_blocks_checked", 0)
                if v_srv:
                    failures.append(f"cycle {cycle}: after restart, blockd served data that lost "
                                    f"acknowledged writes:\n" + dl.format_violations(v_srv))
                if v_file:
                    failures.append(f"cycle {cycle}: after SIGKILL, the backing file lost "
                                    f"acknowledged writes:\n" + dl.format_violations(v_file))
                if failures:
                    dl.log("server log tail:\n" + server.log_tail())
                    break
                if cycle == control_at:
                    ok, detail = tamper_control(img, tracker, make_server)
                    dl.log(f"checker control after cycle {cycle}: "
                           f"{'DETECTED' if ok else 'NOT DETECTED'}: {detail}")
                    tamper_done = True
                    if not ok:
                        failures.append("checker control failed: " + detail)
                        break
            if not failures and not tamper_done:
                failures.append("checker control did not run")
            if not failures and totals["promised_checked"] == 0:
                failures.append("no acknowledged write was ever checked (vacuous run)")
            if not failures and args.control_cycles > 0 and shutil.which("nbdkit") is None:
                dl.log("NOTE: lossy-server control not run: nbdkit is not installed "
                       "(the checker control above still ran)")
            elif not failures and args.control_cycles > 0:
                detected, lines = lossy_control(args, workdir, rng)
                for line in lines:
                    dl.log(line)
                if detected < args.control_cycles:
                    failures.append(f"lossy-server control: loss detected in only {detected} of "
                                    f"{args.control_cycles} cycles (the checker has no teeth)")
                else:
                    dl.log(f"lossy-server control: loss detected in {detected}/{args.control_cycles} cycles")
        finally:
            if server is not None:
                server.stop()
            watchdog.cancel()
    elapsed = time.monotonic() - t0
    dl.log(f"totals: acked writes={totals['acked']} (fua={totals['fua']}, flushes={totals['flush']}), "
           f"promised block checks={totals['promised_checked']}, runtime={elapsed:.1f}s, seed={seed}")
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
