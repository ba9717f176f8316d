"""Shared machinery for blockd's durability tests (test_crash.py, test_power_cut.py).

What lives here:
  * a self-describing 4 KiB block format (block index + sequence number + checksum),
  * a Tracker that records, per block, every version ever sent and the newest version the
    server has promised to keep (the "floor"),
  * a multi-connection write workload (python3-libnbd, one thread per connection),
  * the checker: given the bytes of the volume, report every block that lost a promised write.

Checker rule (per 4 KiB block b):
  * all zeroes            -> fine only if nothing was ever promised for b (floor == 0);
  * bad checksum / magic  -> "corrupt";
  * wrong index / run id  -> "misplaced";
  * a sequence number never sent to b -> "phantom";
  * a sequence number older than the floor -> "rolled-back";
  * otherwise (the floor version, or a newer one that was also sent) -> fine.
Each block has exactly one writer thread and that thread's writes are synchronous, so
"newer" is well defined: a later sequence number on the same block was sent later.

Every loop here is bounded in count and time; processes are only ever stopped by PID.
"""
import collections
import faulthandler
import hashlib
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import blockd_fixture  # noqa: E402  (the project's fixture: starts blockd, stops it by PID)

SKIP = blockd_fixture.SKIP
BS = 4096
MAGIC = b"BLKDDUR1"
_HDR = struct.Struct("<8sQQQII")  # magic, run id, block index, seq, cycle, writer
_CSUM = 32
_PAYLOAD = BS - _HDR.size - _CSUM
ZERO_BLOCK = bytes(BS)


# --------------------------------------------------------------------------- environment
def ensure_environment():
    """Put the Debian tools first in PATH and make sure `import nbd` works.

    A pyenv python3 may shadow /usr/bin/python3 (which has python3-libnbd); re-exec once
    with /usr/bin/python3 in that case.  Returns the nbd module.
    """
    os.environ["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", "")
    try:
        import nbd  # noqa: F401
        return nbd
    except ImportError:
        if (os.path.exists("/usr/bin/python3")
                and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3")
                and not os.environ.get("BLOCKD_DURABILITY_REEXEC")):
            os.environ["BLOCKD_DURABILITY_REEXEC"] = "1"
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
        blockd_fixture.skip("python3-libnbd (`import nbd`) is not available")


def install_signal_handlers():
    """Turn SIGTERM/SIGHUP (e.g. a ctest timeout) into SystemExit so `finally` blocks clean up."""
    def handler(signum, _frame):
        raise SystemExit(f"terminated by signal {signum}")
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)


class Watchdog:
    """If the whole test overruns, clean up what we started and exit 1 (before ctest's kill).

    Cleanups are callables registered while a resource (process, mount, loop device) is
    live; they run newest first from the timer thread, then the process exits.
    """

    def __init__(self, seconds):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._cleanups = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def register(self, fn):
        with self._lock:
            self._cleanups.append(fn)
        return fn

    def unregister(self, fn):
        with self._lock:
            if fn in self._cleanups:
                self._cleanups.remove(fn)

    def cancel(self):
        self._timer.cancel()

    def _fire(self):
        sys.stderr.write(f"\nFAIL: watchdog: the test did not finish within {self.seconds:.0f}s; "
                         "stacks of all threads follow, then cleanup\n")
        faulthandler.dump_traceback(all_threads=True)
        with self._lock:
            fns = list(reversed(self._cleanups))
        for fn in fns:
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                sys.stderr.write(f"watchdog cleanup error: {e}\n")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


_WATCHDOG = None


def start_watchdog(seconds, workdir=None):
    """Arm the global watchdog; with workdir, its last cleanup removes that directory."""
    global _WATCHDOG
    _WATCHDOG = Watchdog(seconds)
    if workdir:
        def remove_workdir():
            try:
                with open("/proc/self/mounts") as f:
                    busy = any(line.split()[1].startswith(workdir.rstrip("/") + "/") for line in f)
            except OSError:
                busy = True
            if busy:
                sys.stderr.write(f"leaving {workdir} in place: something is mounted inside\n")
            else:
                import shutil
                shutil.rmtree(workdir, ignore_errors=True)
        _WATCHDOG.register(remove_workdir)
    return _WATCHDOG


def on_cleanup(fn):
    if _WATCHDOG is not None:
        _WATCHDOG.register(fn)
    return fn


def off_cleanup(fn):
    if _WATCHDOG is not None:
        _WATCHDOG.unregister(fn)


def log(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- block format
def make_block(run_id, idx, seq, cycle=0, writer=0):
    hdr = _HDR.pack(MAGIC, run_id, idx, seq, cycle, writer)
    payload = hashlib.shake_128(hdr).digest(_PAYLOAD)
    return hdr + payload + hashlib.sha256(hdr + payload).digest()


def decode_block(data, run_id):
    """Return ("zero", None) | ("ok", (idx, seq)) | (kind, reason) for a bad block."""
    if data == ZERO_BLOCK:
        return "zero", None
    body, csum = data[:BS - _CSUM], data[BS - _CSUM:]
    if hashlib.sha256(body).digest() != csum:
        return "corrupt", "checksum mismatch"
    magic, rid, idx, seq, _cycle, _writer = _HDR.unpack_from(body)
    if magic != MAGIC:
        return "corrupt", "bad magic"
    if hashlib.shake_128(body[:_HDR.size]).digest(_PAYLOAD) != body[_HDR.size:]:
        return "corrupt", "payload does not match header"
    if rid != run_id:
        return "misplaced", f"block from another run ({rid:#x})"
    return "ok", (idx, seq)


# --------------------------------------------------------------------------- tracker
class Tracker:
    """What was sent, what was acknowledged, what is promised durable.

    mode "crash": every acknowledged write is promised (a process crash keeps the page cache).
    mode "power": only FUA writes, and writes acknowledged before a FLUSH that got its reply.
    """

    def __init__(self, nblocks, mode, run_id=None):
        assert mode in ("crash", "power")
        self.nblocks = nblocks
        self.mode = mode
        self.run_id = run_id if run_id is not None else random.getrandbits(63) | 1
        self.lock = threading.Lock()
        self.seq = 0
        self.floor = [0] * nblocks             # newest promised seq per block
        self.sent = [set() for _ in range(nblocks)]
        self.ack_count = 0                     # acknowledged plain writes so far
        self.pending = collections.deque()     # (ack_no, first, count, seq, fua), power mode
        self.cycle = 0
        self.stats = collections.Counter()

    def new_cycle(self, cycle):
        with self.lock:
            self.cycle = cycle
            self.pending.clear()               # anything not yet durable is no longer coverable
            self.stats = collections.Counter()

    def begin_write(self, first, count):
        with self.lock:
            self.seq += 1
            seq = self.seq
            for b in range(first, first + count):
                self.sent[b].add(seq)
            self.stats["sent"] += 1
            return seq

    def _promise(self, first, count, seq):
        for b in range(first, first + count):
            if seq > self.floor[b]:
                self.floor[b] = seq
        self.stats["promised_blocks"] += count

    def write_acked(self, first, count, seq, fua):
        with self.lock:
            self.stats["acked"] += 1
            self.stats["acked_fua" if fua else "acked_plain"] += 1
            if self.mode == "crash":
                self._promise(first, count, seq)
                self.stats["durable_acks"] += 1
                return
            self.ack_count += 1
            self.pending.append((self.ack_count, first, count, seq, fua))
            if fua:
                self._promise(first, count, seq)
                self.stats["durable_acks"] += 1

    def flush_begin(self):
        with self.lock:
            self.stats["flush_sent"] += 1
            return self.ack_count

    def flush_acked(self, cutoff):
        """A FLUSH sent when `cutoff` writes had been acknowledged got its reply."""
        with self.lock:
            self.stats["flush_acked"] += 1
            covered = 0
            while self.pending and self.pending[0][0] <= cutoff:
                _, first, count, seq, fua = self.pending.popleft()
                if not fua:
                    self._promise(first, count, seq)
                    covered += 1
            self.stats["flush_covered_writes"] += covered
            if covered or self.mode == "crash":
                self.stats["durable_acks"] += 1

    def exposure(self):
        """At a power cut: blocks whose promised version rests on FUA alone (no later FLUSH
        covered it), and acknowledged writes that were never promised."""
        with self.lock:
            fua_only, unpromised = set(), 0
            for _, first, count, seq, fua in self.pending:
                if fua:
                    fua_only.update(b for b in range(first, first + count) if self.floor[b] == seq)
                else:
                    unpromised += 1
            return len(fua_only), unpromised

    def durable_acks(self):
        with self.lock:
            return self.stats["durable_acks"]

    def adopt(self, observed):
        """After a successful check, what is on stable storage is the new floor."""
        with self.lock:
            for b, seq in observed.items():
                if seq > self.floor[b]:
                    self.floor[b] = seq


# --------------------------------------------------------------------------- checker
def check_volume(read_fn, tracker, chunk=1 << 20):
    """Read the whole volume with read_fn(offset, length) -> bytes and apply the rule.

    Returns (violations, observed, summary): violations is a list of dicts; observed maps
    block -> seq found (for blocks holding a valid version).
    """
    violations, observed = [], {}
    summary = collections.Counter()
    total = tracker.nblocks * BS
    with tracker.lock:
        floor = list(tracker.floor)
        sent = [set(s) for s in tracker.sent]
    off = 0
    while off < total:
        n = min(chunk, total - off)
        data = read_fn(off, n)
        if len(data) != n:
            raise RuntimeError(f"short read at {off}: {len(data)} of {n}")
        for i in range(n // BS):
            b = off // BS + i
            kind, info = decode_block(data[i * BS:(i + 1) * BS], tracker.run_id)
            fl = floor[b]
            if fl:
                summary["promised_blocks_checked"] += 1
            v = None
            if kind == "zero":
                summary["zero"] += 1
                if fl:
                    v = ("lost", f"block is all zeroes, promised seq {fl}")
            elif kind != "ok":
                v = (kind, info + (f", promised seq {fl}" if fl else ", nothing promised"))
            else:
                idx, seq = info
                summary["valid"] += 1
                if idx != b:
                    v = ("misplaced", f"holds block {idx} seq {seq}")
                elif seq not in sent[b]:
                    v = ("phantom", f"holds seq {seq} that was never sent to this block")
                elif seq < fl:
                    v = ("rolled-back", f"holds seq {seq}, older than promised seq {fl}")
                else:
                    observed[b] = seq
                    if fl and seq > fl:
                        summary["newer_than_promised"] += 1
            if v:
                violations.append({"block": b, "kind": v[0], "detail": v[1], "floor": fl})
        off += n
    return violations, observed, summary


def file_reader(path):
    def read(off, n):
        with open(path, "rb") as f:
            f.seek(off)
            return f.read(n)
    return read


def _wait_command(h, cookie, timeout, what):
    end = time.monotonic() + timeout
    while not h.aio_command_completed(cookie):
        if time.monotonic() > end:
            raise RuntimeError(f"{what}: no reply within {timeout}s")
        h.poll(100)


def nbd_reader(handle, timeout=60.0):
    """read_fn for check_volume through an NBD handle; each request bounded in time."""
    import nbd

    def read(off, n):
        buf = nbd.Buffer(n)
        _wait_command(handle, handle.aio_pread(buf, off), timeout,
                      f"READ offset={off} length={n}")
        return bytes(buf.to_bytearray())
    return read


def nbd_connect(uri=None, unix=None, timeout=20.0):
    """Connect (and finish the handshake) within `timeout` seconds."""
    import nbd
    h = nbd.NBD()
    if uri is not None:
        h.aio_connect_uri(uri)
    else:
        h.aio_connect_unix(unix)
    end = time.monotonic() + timeout
    while not (h.aio_is_ready() or h.aio_is_dead() or h.aio_is_closed()):
        if time.monotonic() > end:
            raise RuntimeError(f"NBD handshake with {uri or unix} did not finish within {timeout}s")
        h.poll(100)
    if not h.aio_is_ready():
        raise RuntimeError(f"NBD connection to {uri or unix} failed (the server closed it)")
    return h


def format_violations(violations, limit=20):
    lines = [f"  block {v['block']}: {v['kind']}: {v['detail']}" for v in violations[:limit]]
    if len(violations) > limit:
        lines.append(f"  ... and {len(violations) - limit} more")
    kinds = collections.Counter(v["kind"] for v in violations)
    lines.append("  by kind: " + ", ".join(f"{k}={c}" for k, c in sorted(kinds.items())))
    return "\n".join(lines)


# --------------------------------------------------------------------------- workload
class Workload:
    """N client threads, one NBD connection each, writing versioned blocks.

    Thread t owns blocks [t*nblocks/N, (t+1)*nblocks/N), so each block has one writer.  Each
    connection keeps up to `depth` requests in flight (libnbd aio: pipelined requests,
    replies in any order), but never two writes to the same block at once, so per-block
    order is well defined.  After a write is acknowledged, with probability p_flush the
    thread sends a FLUSH (at most one in flight per connection); it covers every write whose
    reply had been received, on any connection, before it was sent (blockd advertises
    CAN_MULTI_CONN).  Writes still in flight when the FLUSH is sent are not covered.
    """

    def __init__(self, nbd_mod, connect, tracker, threads=4, p_fua=0.15, p_flush=0.05,
                 max_blocks_per_write=8, seed=0, max_seconds=30.0, depth=8):
        self.nbd = nbd_mod
        self.connect = connect
        self.tracker = tracker
        self.nthreads = threads
        self.p_fua = p_fua
        self.p_flush = p_flush
        self.max_bpw = max_blocks_per_write
        self.seed = seed
        self.max_seconds = max_seconds
        self.depth = max(1, depth)
        self.stop = threading.Event()
        self.threads = []
        self.errors = []          # errors other than "the server went away"
        self.connected = threading.Barrier(threads + 1)
        self._lock = threading.Lock()

    def start(self):
        for t in range(self.nthreads):
            th = threading.Thread(target=self._run, args=(t,), daemon=True, name=f"writer-{t}")
            th.start()
            self.threads.append(th)
        try:
            self.connected.wait(30)
        except threading.BrokenBarrierError:
            pass
        return self

    def _error(self, msg):
        with self._lock:
            self.errors.append(msg)

    def _run(self, t):
        try:
            h = self.connect()
        except Exception as e:  # noqa: BLE001
            self._error(f"writer {t}: connect failed: {e}")
            self.connected.abort()
            return
        try:
            if not (h.can_fua() and h.can_flush()):
                self._error(f"writer {t}: server does not advertise FUA and FLUSH")
                self.connected.abort()
                return
            try:
                self.connected.wait(30)
            except threading.BrokenBarrierError:
                return
            self._loop(t, h)
        except Exception as e:  # noqa: BLE001  (a harness bug, not a server failure)
            self._error(f"writer {t}: {type(e).__name__}: {e}")
        finally:
            del h

    def _loop(self, t, h):
        nbd = self.nbd
        tr = self.tracker
        rng = random.Random(self.seed * 1000 + t)
        n = tr.nblocks
        lo, hi = t * n // self.nthreads, (t + 1) * n // self.nthreads
        end = time.monotonic() + self.max_seconds
        cycle = tr.cycle
        inflight = {}      # cookie -> (kind, first, count, seq, fua, buf-or-cutoff)
        busy = set()       # blocks with a write in flight
        flush_inflight = False
        want_flush = False
        while not self.stop.is_set() and time.monotonic() < end:
            # Issue requests up to the queue depth.
            try:
                if want_flush and not flush_inflight and len(inflight) < self.depth:
                    cutoff = tr.flush_begin()
                    inflight[h.aio_flush()] = ("flush", 0, 0, 0, False, cutoff)
                    flush_inflight, want_flush = True, False
                while len(inflight) < self.depth:
                    count = 1 if rng.random() < 0.6 else rng.randint(2, self.max_bpw)
                    count = min(count, hi - lo)
                    for _ in range(20):
                        first = rng.randrange(lo, hi - count + 1)
                        if busy.isdisjoint(range(first, first + count)):
                            break
                    else:
                        break  # everything we picked is busy: wait for completions
                    fua = rng.random() < self.p_fua
                    seq = tr.begin_write(first, count)
                    buf = b"".join(make_block(tr.run_id, b, seq, cycle, t)
                                   for b in range(first, first + count))
                    cookie = h.aio_pwrite(buf, first * BS, flags=nbd.CMD_FLAG_FUA if fua else 0)
                    inflight[cookie] = ("write", first, count, seq, fua, buf)
                    busy.update(range(first, first + count))
            except nbd.Error:
                self._harvest(h, inflight, busy)
                return  # server gone (crash / power cut)
            # Wait for progress, then retire whatever completed.
            gone = False
            try:
                h.poll(50)
            except nbd.Error:
                gone = True
            acked_writes, failed, flush_done = self._harvest(h, inflight, busy)
            if flush_done:
                flush_inflight = False
            if failed or gone:
                return  # a failed request means the server went away; outcome unknown
            for _ in range(acked_writes):
                if rng.random() < self.p_flush:
                    want_flush = True

    def _harvest(self, h, inflight, busy):
        """Retire completed requests; returns (acked writes, any failed, a flush completed)."""
        nbd = self.nbd
        acked, failed, flush_done = 0, False, False
        for cookie in list(inflight):
            try:
                done = h.aio_command_completed(cookie)
            except nbd.Error:
                done, ok = True, False
            else:
                ok = True
            if not done:
                continue
            kind, first, count, seq, fua, extra = inflight.pop(cookie)
            if kind == "write":
                busy.difference_update(range(first, first + count))
                if ok:
                    self.tracker.write_acked(first, count, seq, fua)
                    acked += 1
            else:
                flush_done = True
                if ok:
                    self.tracker.flush_acked(extra)
            failed = failed or not ok
        return acked, failed, flush_done

    def finish(self, timeout=20.0):
        """Stop and join all threads; returns the names of threads that did not exit."""
        self.stop.set()
        end = time.monotonic() + timeout
        for th in self.threads:
            th.join(max(0.0, end - time.monotonic()))
        return [th.name for th in self.threads if th.is_alive()]


def wait_for(pred, timeout, step=0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


# --------------------------------------------------------------------------- processes
class Proc:
    """A helper process we started (nbdkit, nbdfuse); stopped only by its own PID."""

    def __init__(self, args, name, env=None, log_path=None):
        self.name = name
        self.args = args
        self.log_path = log_path
        self._logf = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=self._logf, env=env)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL; always reaps."""
        if self.alive():
            self.signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.signal(signal.SIGKILL)
                self.wait(timeout)
        self.close_log()

    def kill(self, timeout=10.0):
        self.signal(signal.SIGKILL)
        self.wait(timeout)

    def close_log(self):
        if self._logf not in (None, subprocess.DEVNULL):
            try:
                self._logf.close()
            except OSError:
                pass
            self._logf = None

    def log_tail(self, n=30):
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-n:])


def blockd_log_tail(bd, n=40):
    if bd is None:
        return ""
    lines = bd.log.splitlines()
    return "\n".join(lines[-n:])


def require_blockd():
    path = blockd_fixture.blockd_bin()
    if not os.access(path, os.X_OK):
        log(f"FAIL: blockd binary not found at {path} (build it, or set BLOCKD_BIN)")
        sys.exit(1)
    return path
