#!/usr/bin/python3
"""Side-by-side fio benchmark: blockd against nbdkit, qemu-nbd and nbd-server.

Every server exports the same pre-written backing file on 127.0.0.1, one server
at a time; each round runs every server through every job in perf/jobs/
(A B C D, A B C D, ...). Two reference rows frame the peers: fio with
ioengine=io_uring straight on the backing file (no network: the ceiling) and
blockd's memory backend (no disk: protocol cost only).

Per server and job it reports the median over rounds of IOPS, MB/s, p50 and p99
latency (fio's total "lat": submission to completion), blockd's IOPS ratio to the row, and the server's CPU time
per million I/Os (utime+stime from /proc/PID/stat around each fio run; client
and server share the cores, so CPU per I/O decides who wins on a small box).

    /usr/bin/python3 perf/bench.py                 full run (about 12 minutes)
    /usr/bin/python3 perf/bench.py --smoke         seconds per job, one round
    /usr/bin/python3 perf/bench.py --list          servers and jobs

Python standard library only. See perf/README.md.
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
JOBS_DIR = os.path.join(HERE, "jobs")
EXPORT = "bench"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20

EXIT_FAILED = 1        # a run failed (a server crashed, fio reported an error)
EXIT_USAGE = 2         # bad command line
EXIT_MISSING = 3       # a selected server or tool is not installed

# The order jobs are run and printed in; other *.fio files in perf/jobs follow.
JOB_ORDER = [
    "randread-4k-qd32", "randwrite-4k-qd32", "randrw70-4k-qd32",
    "randread-4k-qd1", "randwrite-4k-qd1",
    "seqread-1m-qd8", "seqwrite-1m-qd8",
    "randread-4k-4conn-qd8", "randwrite-4k-4conn-qd8",
]

# Defaults: 7 rows x 9 jobs x 3 rounds = 189 fio runs of 3 s, plus fio start-up
# (~0.4 s) and fdatasync + re-reading the file before each run: about 12 minutes.
DEFAULT_RUNTIME = 3
DEFAULT_ROUNDS = 3
DEFAULT_SIZE = "1GiB"
SMOKE_RUNTIME = 1
SMOKE_SIZE = "64MiB"


class BenchError(Exception):
    """A failure with a message meant for the user (no traceback)."""


class Interrupted(BaseException):
    """SIGTERM/SIGINT/SIGHUP: unwind through every finally block."""


def _on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


# --- small helpers ---------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def prctl(option, arg):
    if _libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                   ctypes.c_ulong(0)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl({option}): {os.strerror(e)}")


def _server_preexec():
    # The server dies with bench.py even if bench.py is SIGKILLed (nbd-server's
    # daemon() fork drops this, which is why its PID is also tracked, see below).
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def parse_size(text):
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B?)\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (use e.g. 64MiB, 1GiB)")
    n = int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]
    if n <= 0 or n % MiB:
        raise argparse.ArgumentTypeError(f"size {text!r} must be a positive multiple of 1 MiB")
    return n


def human_size(n):
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nbd_probe(port):
    """True once the port answers with an NBD newstyle greeting. The probe then
    ends the handshake properly (NBD_OPT_ABORT), so servers log no error."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            greeting = b""
            while len(greeting) < 18:
                chunk = s.recv(18 - len(greeting))
                if not chunk:
                    return False
                greeting += chunk
            if greeting[:16] != b"NBDMAGICIHAVEOPT":
                return False
            server_flags = int.from_bytes(greeting[16:18], "big")
            s.sendall((server_flags & 3).to_bytes(4, "big") +       # FIXED_NEWSTYLE|NO_ZEROES
                      b"IHAVEOPT" + (2).to_bytes(4, "big") + (0).to_bytes(4, "big"))  # ABORT
            try:
                s.recv(20)                                           # the ACK, if any
            except OSError:
                pass
            return True
    except OSError:
        return False


def fs_type(path):
    """File system type of the mount holding path (from /proc/self/mountinfo)."""
    path = os.path.realpath(path)
    best, best_type = "", "?"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            mnt = left.split()[4].replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, best_type = mnt, right.split()[0]
    return best_type


def cmd_output(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"({e})"


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# --- CPU accounting ----------------------------------------------------------------

def _stat_fields(pid):
    """Fields of /proc/PID/stat from field 3 (state) on, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _children_map():
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(name)
            if fields:
                kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def descendants(pid):
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cpu_ticks(pid):
    """utime+stime of the whole process (all threads, io_uring workers included)
    plus cutime+cstime (children it has reaped: nbd-server forks one per
    connection), in clock ticks."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # stat fields 14..17 (utime stime cutime cstime) are indexes 11..14 here
    return sum(int(x) for x in fields[11:15])


def settled_cpu_ticks(pid, timeout=5.0):
    """cpu_ticks once the server has no child processes left (nbd-server's
    per-connection children are reaped, so their CPU is in cutime/cstime)."""
    end = time.monotonic() + timeout
    while descendants(pid) and time.monotonic() < end:
        time.sleep(0.02)
    total = cpu_ticks(pid)
    for d in descendants(pid):      # still alive after the timeout: count them too
        total += cpu_ticks(d) or 0
    return total


# --- servers -------------------------------------------------------------------------

class Server:
    """One server process serving EXPORT on 127.0.0.1:port, started and stopped by PID."""

    def __init__(self, row, argv, log_path, port, pidfile=None):
        self.row = row
        self.argv = argv
        self.log_path = log_path
        self.port = port
        self.pidfile = pidfile          # set for servers that daemonize (nbd-server)
        self.proc = None
        self.pid = None                 # the PID that serves (after daemon() for nbd-server)
        self._log = None

    @property
    def uri(self):
        return f"nbd://127.0.0.1:{self.port}/{EXPORT}"

    def start(self, timeout=30.0):
        self._log = open(self.log_path, "ab")
        self._log.write(("$ " + " ".join(self.argv) + "\n").encode())
        self._log.flush()
        if self.pidfile:
            # nbd-server always daemonizes when it should serve more than one
            # connection (-d serves a single client, then exits). As a
            # subreaper, the daemon becomes our child: we can wait for it and
            # confirm a PID is ours before signalling it.
            prctl(PR_SET_CHILD_SUBREAPER, 1)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_server_preexec, env=_env())
        if not self.pidfile:
            self.pid = self.proc.pid
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.pidfile:
                if self.pid is None:
                    self.pid = self._daemon_pid()
                if self.pid is None and self.proc.poll() not in (None, 0):
                    break
                if self.pid is not None and not self.alive():
                    break
            elif self.proc.poll() is not None:
                break
            if self.pid is not None and nbd_probe(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        what = (f"did not answer on 127.0.0.1:{self.port} within {timeout:.0f}s"
                if time.monotonic() >= end else f"exited before serving on 127.0.0.1:{self.port}")
        where = "syslog (journalctl -t nbd_server)" if self.pidfile else self.log_path
        raise BenchError(f"{self.row}: the server {what}; its log is in {where}:\n"
                         f"{self.log_tail()}")

    def _daemon_pid(self):
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        fields = _stat_fields(pid)
        # Only a process we are the parent of (subreaper) is ours to signal.
        if fields is None or int(fields[1]) != os.getpid():
            return None
        return pid

    def alive(self):
        if self.pidfile:
            fields = _stat_fields(self.pid) if self.pid else None
            return fields is not None and fields[0] != "Z"
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15.0):
        """SIGTERM, then SIGKILL after timeout; returns the exit status (or None)."""
        status = None
        try:
            if self.proc is not None and not self.pidfile:
                if self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGTERM)
                    try:
                        self.proc.wait(timeout)
                    except subprocess.TimeoutExpired:
                        self._note(f"no exit {timeout:.0f}s after SIGTERM: SIGKILL")
                        self.proc.kill()
                        self.proc.wait(10)
                status = self.proc.returncode
            elif self.pidfile:
                if self.proc is not None and self.proc.poll() is None:
                    try:                                   # the pre-daemon process
                        self.proc.wait(timeout)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait(10)
                if self.pid is None:
                    self.pid = self._daemon_pid()
                if self.pid is not None:
                    status = self._stop_daemon(timeout)
        finally:
            if self._log:
                self._log.close()
                self._log = None
        return status

    def _stop_daemon(self, timeout):
        pid = self.pid
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        end = time.monotonic() + timeout
        while True:
            try:
                done, st = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return None
            if done:
                break
            if time.monotonic() > end:
                self._note(f"no exit {timeout:.0f}s after SIGTERM: SIGKILL")
                os.kill(pid, signal.SIGKILL)
                _, st = os.waitpid(pid, 0)
                break
            time.sleep(0.02)
        # If it was killed, its connection children were re-parented to us:
        # reap whatever is left (they exit once their client is gone).
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    time.sleep(0.05)
            except ChildProcessError:
                break
        return os.waitstatus_to_exitcode(st)

    def _note(self, text):
        if self._log:
            self._log.write(f"[bench] {text}\n".encode())
            self._log.flush()

    def log_tail(self, n=3000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""


def _env():
    env = dict(os.environ)
    env["PATH"] = SYSTEM_PATH + ":" + env.get("PATH", "")
    return env


class Row:
    """One row of the table: a server (or the local io_uring reference)."""

    def __init__(self, name, title, tools, kind="nbd"):
        self.name = name
        self.title = title
        self.tools = tools          # executables it needs
        self.kind = kind            # "nbd" (a server) or "local" (fio on the file)

    def command(self, ctx, port):
        raise NotImplementedError

    def make_server(self, ctx, rnd):
        port = free_port()
        argv, pidfile = self.command(ctx, port)
        log = os.path.join(ctx.out, "logs", f"r{rnd}-{self.name}.log")
        return Server(self.name, argv, log, port, pidfile)


class LocalRow(Row):
    def __init__(self):
        super().__init__("io_uring-local", "fio ioengine=io_uring on the backing file (buffered, "
                         "no network): the ceiling", ["fio"], kind="local")


# The blockd-busy-poll row's polling window: longer than the gap between a reply and
# fio's next request at queue depth 1, short next to a sleep.
BUSY_POLL_US = 50


def blockd_private_state(ctx):
    """A catalog and control socket of the benchmark's own, never the node's."""
    state = os.path.join(ctx.work, "blockd-state")
    os.makedirs(state, exist_ok=True)
    return ["--state-dir", state, "--control-socket", os.path.join(state, "control.sock")]


class BlockdFile(Row):
    def __init__(self):
        super().__init__("blockd", "blockd, file backend", [])

    def command(self, ctx, port):
        return [ctx.blockd, *blockd_private_state(ctx), "--listen", f"127.0.0.1:{port}",
                "--volume", f"name={EXPORT},path={ctx.file}"], None


class BlockdBusyPoll(Row):
    def __init__(self):
        super().__init__("blockd-busy-poll", f"blockd, file backend, --busy-poll-us {BUSY_POLL_US}: "
                         "workers poll before sleeping", [])

    def command(self, ctx, port):
        return [ctx.blockd, *blockd_private_state(ctx), "--listen", f"127.0.0.1:{port}",
                "--busy-poll-us", str(BUSY_POLL_US), "--volume", f"name={EXPORT},path={ctx.file}"], None


class BlockdDirect(Row):
    def __init__(self):
        super().__init__("blockd-direct", "blockd, file backend with io=direct (O_DIRECT): "
                         "the match for qemu-nbd-none", [])

    def command(self, ctx, port):
        return [ctx.blockd, *blockd_private_state(ctx), "--listen", f"127.0.0.1:{port}",
                "--volume", f"name={EXPORT},path={ctx.file},io=direct"], None


class BlockdMemory(Row):
    def __init__(self):
        super().__init__("blockd-memory", "blockd, memory backend (protocol cost only), "
                         "pre-written", [])

    def command(self, ctx, port):
        return [ctx.blockd, *blockd_private_state(ctx), "--listen", f"127.0.0.1:{port}",
                "--volume", f"name={EXPORT},backend=memory,size={ctx.size}"], None


class Nbdkit(Row):
    def __init__(self):
        super().__init__("nbdkit", "nbdkit file plugin", ["nbdkit"])

    def command(self, ctx, port):
        # -f foreground; --exit-with-parent as a second safety net; default
        # threads (16 per connection, parallel thread model); the file plugin
        # ignores the export name, so /bench works.
        return ["nbdkit", "-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", str(port),
                "file", f"file={ctx.file}"], None


class QemuNbd(Row):
    def __init__(self, cache):
        super().__init__(f"qemu-nbd-{cache}", f"qemu-nbd --aio=io_uring --cache={cache}",
                         ["qemu-nbd"])
        self.cache = cache

    def command(self, ctx, port):
        # -t: keep serving after the last client leaves (fio reconnects per job);
        # -e 8: up to 8 clients at once (fio opens a probe connection per job
        # before its working connection).
        return ["qemu-nbd", "-f", "raw", f"--aio=io_uring", f"--cache={self.cache}",
                "-e", "8", "-t", "-b", "127.0.0.1", "-p", str(port), "-x", EXPORT,
                ctx.file], None


class NbdServer(Row):
    def __init__(self):
        super().__init__("nbd-server", "nbd-server (flush=true, fua=true)", ["nbd-server"])

    def command(self, ctx, port):
        cfg = os.path.join(ctx.work, f"nbd-server-{port}.conf")
        pidfile = os.path.join(ctx.work, f"nbd-server-{port}.pid")
        with open(cfg, "w") as f:
            f.write("[generic]\n"
                    "    listenaddr = 127.0.0.1\n"
                    f"    port = {port}\n"
                    f"[{EXPORT}]\n"
                    f"    exportname = {ctx.file}\n"
                    "    flush = true\n"
                    "    fua = true\n")
        return ["nbd-server", "-C", cfg, "-p", pidfile], pidfile


def all_rows():
    return [LocalRow(), BlockdMemory(), BlockdFile(), BlockdBusyPoll(), Nbdkit(), QemuNbd("writeback"),
            QemuNbd("none"), BlockdDirect(), NbdServer()]


# Rows whose O_DIRECT writes evict the pages they overwrite, by design.
DIRECT_ROWS = ("qemu-nbd-none", "blockd-direct")


# --- fio --------------------------------------------------------------------------

def list_jobs():
    names = sorted(f[:-4] for f in os.listdir(JOBS_DIR) if f.endswith(".fio"))
    ordered = [j for j in JOB_ORDER if j in names]
    return ordered + [j for j in names if j not in ordered]


def local_job_text(text):
    """The nbd job turned into the same job with io_uring on the backing file."""
    out, swapped = [], 0
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "ioengine":
            out.append("ioengine=io_uring")
            swapped += 1
        elif key == "uri":
            # invalidate=0: fio would otherwise drop the file's page cache
            # (POSIX_FADV_DONTNEED) before starting, and the servers' rows run
            # on a cached file.
            out.append("filename=${BENCH_FILE}")
            out.append("invalidate=0")
            swapped += 1
        else:
            out.append(line)
    if swapped != 2:
        raise BenchError("a job file must have exactly one ioengine= and one uri= line")
    return "\n".join(out) + "\n"


class FioResult:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def percentile_from_bins(bins, pct):
    total = sum(bins.values())
    if not total:
        return 0.0
    want = total * pct / 100.0
    seen = 0
    for value in sorted(bins):
        seen += bins[value]
        if seen >= want:
            return float(value)
    return float(max(bins))


def parse_fio(path):
    with open(path) as f:
        text = f.read()
    data = json.loads(text[text.index("{"):])      # fio may print notes first
    iops = bw = ios = 0.0
    bins = {}
    fallback = {}
    errors = []
    busy_s = 0.0
    for job in data["jobs"]:
        if job.get("error"):
            errors.append(f"{job.get('jobname')}: error {job['error']}")
        # fio's own CPU use over the timed phase: usr_cpu and sys_cpu are percentages of
        # job_runtime, which group_reporting sums over the job's threads.
        cpu_pct = job.get("usr_cpu", 0.0) + job.get("sys_cpu", 0.0)
        busy_s += cpu_pct / 100.0 * job.get("job_runtime", 0) / 1000.0
        for d in ("read", "write"):
            side = job[d]
            if not side.get("total_ios"):
                continue
            iops += side["iops"]
            bw += side["bw_bytes"]
            ios += side["total_ios"]
            # Total latency (submission + completion, fio's "lat"), not "clat": libnbd
            # sends the request inside fio's submit call, so how much of the round trip
            # lands in clat depends on the server's scheduling, not on its speed.
            lat = side.get("lat_ns", {})
            for k, v in lat.get("bins", {}).items():
                bins[int(k)] = bins.get(int(k), 0) + v
            fallback.setdefault("p50", lat.get("percentile", {}).get("50.000000", 0.0))
            fallback.setdefault("p99", lat.get("percentile", {}).get("99.000000", 0.0))
    p50 = percentile_from_bins(bins, 50) if bins else fallback.get("p50", 0.0)
    p99 = percentile_from_bins(bins, 99) if bins else fallback.get("p99", 0.0)
    return FioResult(iops=iops, bw_bytes=bw, ios=int(ios), p50_us=p50 / 1000.0,
                     p99_us=p99 / 1000.0, errors=errors, fio_busy_cpu_s=busy_s)


def run_fio(ctx, jobfile, out_json, env_extra, timeout):
    argv = ["fio", "--output-format=json+", "--lat_percentiles=1", f"--output={out_json}", jobfile]
    env = _env()
    env.update(env_extra)
    env["BENCH_RUNTIME"] = str(ctx.runtime)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out = b""
        proc.kill()
        proc.wait()
        raise BenchError(f"fio did not finish within {timeout}s (a request got no reply?)")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    fio_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"fio exited with {proc.returncode}: {text.strip()[-2000:]}")
    try:
        res = parse_fio(out_json)
    except (OSError, ValueError, KeyError) as e:
        raise BenchError(f"fio wrote no usable JSON to {out_json} ({e}): {text.strip()[-2000:]}")
    if res.errors:
        raise BenchError("fio reported errors: " + "; ".join(res.errors))
    res.fio_cpu_s = fio_cpu
    # In % of one core: one fio thread per connection, so a one-connection row near
    # 100% is bound by the client, whatever the server does.
    res.fio_busy_pct = 100.0 * res.fio_busy_cpu_s / ctx.runtime
    return res


def prefill(ctx, server):
    """Write every byte of the memory volume once so reads are not of holes."""
    out = os.path.join(ctx.work, "prefill.json")
    argv = ["fio", "--name=prefill", "--ioengine=nbd", f"--uri={server.uri}", "--rw=write",
            "--bs=1m", "--iodepth=8", "--output-format=json", f"--output={out}"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=_env())
    if r.returncode != 0:
        raise BenchError(f"prefill of {server.row} failed: {r.stdout}{r.stderr}")


# --- the run ------------------------------------------------------------------------

class Context:
    pass


def create_backing_file(path, size):
    """size bytes of random data, every block written (not sparse), synced."""
    chunk = 4 * MiB
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        done = 0
        while done < size:
            n = min(chunk, size - done)
            os.write(fd, os.urandom(n))
            done += n
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare_file(path):
    """Before every fio run: write back dirty pages (fdatasync) and read the whole
    file into the page cache, so every server and job starts from the same state:
    clean and cached. (qemu-nbd --cache=none's O_DIRECT writes evict the pages
    they touch, and some VMs reclaim idle page cache proactively, e.g. DAMON.)"""
    fd = os.open(path, os.O_RDWR)
    try:
        os.fdatasync(fd)
        view = memoryview(bytearray(4 * MiB))
        while os.readv(fd, [view]) > 0:
            pass
    finally:
        os.close(fd)


_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def resident_pct(path):
    """Share of the file in the page cache now (mincore), in percent; None if unknown."""
    try:
        size = os.path.getsize(path)
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        addr = _libc.mmap(None, size, 1, 1, fd, 0)          # PROT_READ, MAP_SHARED
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            pages = (size + mmap_pagesize() - 1) // mmap_pagesize()
            vec = (ctypes.c_ubyte * pages)()
            if _libc.mincore(addr, size, vec) != 0:
                return None
            return 100.0 * sum(b & 1 for b in bytes(vec)) / pages
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)


def mmap_pagesize():
    return os.sysconf("SC_PAGE_SIZE")


def machine_info(ctx):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    try:
        with open("/etc/os-release") as f:
            osr = dict(l.rstrip("\n").split("=", 1) for l in f if "=" in l)
        distro = osr.get("PRETTY_NAME", "?").strip('"')
    except OSError:
        distro = "?"
    git = cmd_output(["git", "-C", REPO, "describe", "--always", "--dirty"])
    info = {
        "hostname": platform.node(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "kernel": platform.release(),
        "os": distro,
        "backing_dir": ctx.work,
        "backing_fs": fs_type(ctx.work),
        "loadavg_start": loadavg(),
        "versions": {
            "blockd": cmd_output([ctx.blockd, "--version"]) + f" (git {git})",
            "fio": cmd_output(["fio", "--version"]),
        },
    }
    damon = []
    for state in sorted(os.listdir("/sys/kernel/mm/damon/admin/kdamonds")
                        if os.path.isdir("/sys/kernel/mm/damon/admin/kdamonds") else []):
        try:
            with open(f"/sys/kernel/mm/damon/admin/kdamonds/{state}/state") as f:
                damon.append(f.read().strip())
        except OSError:
            pass
    info["damon_kdamonds_on"] = damon.count("on")     # proactive reclaim of idle page cache
    if shutil.which("nbdkit"):
        info["versions"]["nbdkit"] = cmd_output(["nbdkit", "--version"])
    if shutil.which("qemu-nbd"):
        info["versions"]["qemu-nbd"] = cmd_output(["qemu-nbd", "--version"]).splitlines()[0]
    if shutil.which("nbd-server"):
        info["versions"]["nbd-server"] = cmd_output(["nbd-server", "-V"]).splitlines()[0]
    return info


def check_prerequisites(ctx, rows):
    missing = []
    hints = {"fio": "apt-get install fio", "nbdkit": "apt-get install nbdkit",
             "qemu-nbd": "apt-get install qemu-utils", "nbd-server": "apt-get install nbd-server"}
    for tool in sorted({"fio"} | {t for r in rows for t in r.tools}):
        if shutil.which(tool, path=SYSTEM_PATH + ":" + os.environ.get("PATH", "")) is None:
            users = [r.name for r in rows if tool in r.tools] or ["every row"]
            missing.append(f"{tool} (needed by {', '.join(users)}; {hints.get(tool, '')})")
    if "fio (" not in " ".join(missing):
        engines = cmd_output(["fio", "--enghelp"]).split()
        if any(r.kind == "nbd" for r in rows) and "nbd" not in engines:
            missing.append("fio's nbd ioengine (this fio was built without libnbd)")
        if any(r.kind == "local" for r in rows) and "io_uring" not in engines:
            missing.append("fio's io_uring ioengine")
    if any(r.name.startswith("blockd") for r in rows) and not os.access(ctx.blockd, os.X_OK):
        missing.append(f"blockd binary {ctx.blockd} (build it: cmake --build build; "
                       "or pass --blockd / set BLOCKD_BIN)")
    if any(r.name == "nbdkit" for r in rows) and shutil.which("nbdkit"):
        if subprocess.run(["nbdkit", "file", "--version"], capture_output=True).returncode:
            missing.append("nbdkit's file plugin")
    if missing:
        raise BenchError("cannot run the comparison, missing:\n  - " + "\n  - ".join(missing) +
                         "\nInstall them, or choose the rows to run with --servers "
                         "(see --list).", )


def run(ctx, rows, jobs):
    results = {(r.name, j): [] for r in rows for j in jobs}
    failures = []
    local_jobs = {}
    for j in jobs:
        with open(os.path.join(JOBS_DIR, j + ".fio")) as f:
            text = local_job_text(f.read())
        path = os.path.join(ctx.out, "jobs-io_uring-local", j + ".fio")
        with open(path, "w") as f:
            f.write(text)
        local_jobs[j] = path
    ctx.started = []
    total = len(rows) * len(jobs) * ctx.rounds
    n = 0
    t0 = time.monotonic()
    for rnd in range(1, ctx.rounds + 1):
        for row in rows:
            server = None
            try:
                if row.kind == "nbd":
                    for attempt in (1, 2):      # the free port may be taken meanwhile
                        server = row.make_server(ctx, rnd)
                        ctx.started.append(server)
                        try:
                            server.start()
                            break
                        except BenchError:
                            ctx.started.remove(server)
                            if attempt == 2:
                                server = None
                                raise
                    ctx.started_info.append({"row": row.name, "pid": server.pid,
                                             "argv": server.argv})
                    if row.name == "blockd-memory":
                        prefill(ctx, server)
                for j in jobs:
                    n += 1
                    elapsed = time.monotonic() - t0
                    print(f"[{n}/{total} {elapsed:5.0f}s] round {rnd} {row.name:<19} {j}",
                          flush=True)
                    raw = os.path.join(ctx.out, "raw", f"r{rnd}-{row.name}-{j}.json")
                    if row.name != "blockd-memory":
                        prepare_file(ctx.file)
                    try:
                        if server is not None and not server.alive():
                            raise BenchError("the server is not running any more")
                        if row.kind == "local":
                            res = run_fio(ctx, local_jobs[j], raw, {"BENCH_FILE": ctx.file},
                                          timeout=ctx.runtime + 120)
                            res.server_cpu_s = None
                        else:
                            before = settled_cpu_ticks(server.pid)
                            res = run_fio(ctx, os.path.join(JOBS_DIR, j + ".fio"), raw,
                                          {"BENCH_URI": server.uri}, timeout=ctx.runtime + 120)
                            after = settled_cpu_ticks(server.pid)
                            if before is None or after is None:
                                raise BenchError("the server exited during the run")
                            res.server_cpu_s = (after - before) / CLK_TCK
                        res.cached_pct_after = (resident_pct(ctx.file)
                                                if row.name != "blockd-memory" else None)
                        results[(row.name, j)].append(res)
                    except BenchError as e:
                        msg = f"round {rnd} {row.name} {j}: {e}"
                        if server is not None:
                            msg += f"\n  server log {server.log_path}:\n{server.log_tail(1500)}"
                        print("FAILED " + msg, file=sys.stderr, flush=True)
                        failures.append(msg)
            except BenchError as e:
                msg = f"round {rnd} {row.name}: {e}"
                print("FAILED " + msg, file=sys.stderr, flush=True)
                failures.append(msg)
            finally:
                if server is not None:
                    status = server.stop()
                    ctx.started.remove(server)
                    if row.name.startswith("blockd") and status not in (0, None):
                        failures.append(f"round {rnd} {row.name}: exit status {status} "
                                        "after SIGTERM (expected 0)")
    return results, failures


def summarize(ctx, rows, jobs, results):
    out = []
    med = {}
    for j in jobs:
        for r in rows:
            runs = results[(r.name, j)]
            if not runs:
                continue
            def m(vals):
                vals = [v for v in vals if v is not None]
                return statistics.median(vals) if vals else None
            cpu_mio = [None if x.server_cpu_s is None or not x.ios
                       else x.server_cpu_s / (x.ios / 1e6) for x in runs]
            fio_mio = [x.fio_cpu_s / (x.ios / 1e6) if x.ios else None for x in runs]
            fio_busy = [x.fio_busy_pct for x in runs]
            iops = [x.iops for x in runs]
            med[(r.name, j)] = {
                "iops": m(iops),
                "mb_s": m([x.bw_bytes / 1e6 for x in runs]),
                "p50_us": m([x.p50_us for x in runs]),
                "p99_us": m([x.p99_us for x in runs]),
                "server_cpu_s_per_mio": m(cpu_mio),
                "fio_cpu_s_per_mio": m(fio_mio),
                "fio_busy_pct": m(fio_busy),
                "iops_spread_pct": (100.0 * (max(iops) - min(iops)) / m(iops)
                                    if len(iops) > 1 and m(iops) else None),
            }
            out.append({"server": r.name, "job": j, "rounds": len(runs),
                        "median": med[(r.name, j)],
                        "runs": [{"iops": x.iops, "mb_s": x.bw_bytes / 1e6, "ios": x.ios,
                                  "p50_us": x.p50_us, "p99_us": x.p99_us,
                                  "server_cpu_s": x.server_cpu_s, "fio_cpu_s": x.fio_cpu_s,
                                  "fio_busy_pct": x.fio_busy_pct,
                                  "file_cached_pct_after": x.cached_pct_after}
                                 for x in runs]})
    for row in out:
        b = med.get(("blockd", row["job"]))
        mine = row["median"]["iops"]
        row["median"]["blockd_ratio"] = (b["iops"] / mine) if b and mine else None
    return out


def fmt(v, spec, width):
    if v is not None and spec == "lat":
        spec = ".2f" if v < 10 else ".1f" if v < 10000 else ".0f"
    return ("-" if v is None else format(v, spec)).rjust(width)


def table(rows, jobs, summary):
    by = {(s["server"], s["job"]): s["median"] for s in summary}
    lines = []
    head = (f"{'server':<19}{'IOPS':>10}{'MB/s':>9}{'p50 us':>9}{'p99 us':>9}"
            f"{'srv CPU':>9}{'fio CPU':>9}{'fio busy':>9}{'blockd/x':>9}{'spread':>8}")
    lines.append("IOPS, MB/s (10^6 bytes), latency (fio's total lat): medians over rounds. "
                 "CPU: seconds per million I/Os.")
    lines.append("fio busy: fio's CPU over the timed run, % of one core (one thread per "
                 "connection: near 100% on one connection, the client is the bound).")
    lines.append("blockd/x: blockd's IOPS divided by the row's. spread: (max-min)/median "
                 "of IOPS over rounds.")
    for j in jobs:
        lines.append("")
        lines.append(f"== {j}")
        lines.append(head)
        for r in rows:
            m = by.get((r.name, j))
            if m is None:
                lines.append(f"{r.name:<19}{'FAILED':>10}")
                continue
            lines.append(f"{r.name:<19}{fmt(m['iops'], ',.0f', 10)}{fmt(m['mb_s'], '.1f', 9)}"
                         f"{fmt(m['p50_us'], 'lat', 9)}{fmt(m['p99_us'], 'lat', 9)}"
                         f"{fmt(m['server_cpu_s_per_mio'], '.1f', 9)}"
                         f"{fmt(m['fio_cpu_s_per_mio'], '.1f', 9)}"
                         f"{fmt(m['fio_busy_pct'], '.0f', 8)}{'%' if m['fio_busy_pct'] is not None else ' '}"
                         f"{fmt(m['blockd_ratio'], '.2f', 9)}"
                         f"{fmt(m['iops_spread_pct'], '.0f', 7)}{'%' if m['iops_spread_pct'] is not None else ' '}")
    cached = [(x["file_cached_pct_after"], r["server"], r["job"])
              for r in summary if r["server"] not in DIRECT_ROWS for x in r["runs"]
              if x.get("file_cached_pct_after") is not None]
    if cached:
        low = min(cached)
        lines.append("")
        lines.append(f"Backing file in the page cache after each run (each starts at 100%; "
                     f"{' and '.join(DIRECT_ROWS)} left out): median {statistics.median(c[0] for c in cached):.0f}%, "
                     f"lowest {low[0]:.0f}% ({low[1]}, {low[2]}).")
    return "\n".join(lines)


def main(argv=None):
    rows_all = all_rows()
    names = [r.name for r in rows_all]
    p = argparse.ArgumentParser(
        description="Side-by-side fio benchmark of blockd, nbdkit, qemu-nbd and nbd-server "
                    "on one backing file. See perf/README.md.")
    p.add_argument("--smoke", action="store_true",
                   help=f"short run to check the benchmark works: {SMOKE_RUNTIME}s per job, "
                        f"one round, {SMOKE_SIZE} file (each can still be overridden)")
    p.add_argument("--servers", help="comma-separated rows to run, in this order "
                   f"(default all: {','.join(names)})")
    p.add_argument("--jobs", help="comma-separated job names from perf/jobs (default all)")
    p.add_argument("--runtime", type=int, help=f"seconds per fio run (default {DEFAULT_RUNTIME})")
    p.add_argument("--rounds", type=int, help=f"rounds (default {DEFAULT_ROUNDS})")
    p.add_argument("--size", type=parse_size, help=f"backing file size (default {DEFAULT_SIZE})")
    p.add_argument("--dir", help="where to create the backing file (default: a new directory "
                   "under /var/tmp; must not be tmpfs)")
    p.add_argument("--out", help="where to write raw fio JSON, logs, summary.json, table.txt "
                   "(default perf/results/DATE-TIME)")
    p.add_argument("--blockd", default=os.environ.get("BLOCKD_BIN",
                   os.path.join(REPO, "build", "server", "blockd")),
                   help="blockd binary (default $BLOCKD_BIN or build/server/blockd)")
    p.add_argument("--keep", action="store_true", help="keep the backing file and work dir")
    p.add_argument("--list", action="store_true", help="list rows and jobs, then exit")
    args = p.parse_args(argv)

    jobs_all = list_jobs()
    if args.list:
        for r in rows_all:
            print(f"{r.name:<20} {r.title}")
        print()
        for j in jobs_all:
            with open(os.path.join(JOBS_DIR, j + ".fio")) as f:
                first = f.readline().lstrip("#; ").strip()
            print(f"{j:<24} {first}")
        return 0

    def pick(text, allowed, what):
        if not text:
            return list(allowed)
        chosen = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in chosen if x not in allowed]
        if bad:
            p.error(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
        return chosen

    rows = [next(r for r in rows_all if r.name == n) for n in pick(args.servers, names, "server")]
    jobs = pick(args.jobs, jobs_all, "job")

    ctx = Context()
    ctx.smoke = args.smoke
    ctx.runtime = args.runtime or (SMOKE_RUNTIME if args.smoke else DEFAULT_RUNTIME)
    ctx.rounds = args.rounds or (1 if args.smoke else DEFAULT_ROUNDS)
    ctx.size = args.size or parse_size(SMOKE_SIZE if args.smoke else DEFAULT_SIZE)
    ctx.blockd = os.path.abspath(args.blockd)
    if ctx.runtime < 1 or ctx.rounds < 1:
        p.error("--runtime and --rounds must be at least 1")

    try:
        check_prerequisites(ctx, rows)
    except BenchError as e:
        print(f"bench.py: {e}", file=sys.stderr)
        return EXIT_MISSING

    base = args.dir or "/var/tmp"
    if not os.path.isdir(base):
        print(f"bench.py: --dir {base} is not a directory", file=sys.stderr)
        return EXIT_USAGE
    if fs_type(base) in ("tmpfs", "ramfs"):
        print(f"bench.py: {base} is on {fs_type(base)}; the backing file must be on a disk "
              "(qemu-nbd --cache=none needs O_DIRECT, and RAM would flatter every server). "
              "Pass --dir on a disk file system.", file=sys.stderr)
        return EXIT_USAGE

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    ctx.out = os.path.abspath(args.out or os.path.join(HERE, "results",
                                                       stamp + ("-smoke" if args.smoke else "")))
    for sub in ("raw", "logs", "jobs-io_uring-local"):
        os.makedirs(os.path.join(ctx.out, sub), exist_ok=True)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, _on_signal)

    ctx.work = tempfile.mkdtemp(prefix="blockd-bench-", dir=base)
    ctx.file = os.path.join(ctx.work, "backing.img")
    ctx.started = []
    ctx.started_info = []
    status = 0
    started_at = time.time()
    try:
        info = machine_info(ctx)
        la = info["loadavg_start"][0]
        print(f"blockd bench: {len(rows)} rows x {len(jobs)} jobs x {ctx.rounds} rounds, "
              f"{ctx.runtime}s each, {human_size(ctx.size)} backing file in {ctx.work} "
              f"({info['backing_fs']}); output {ctx.out}", flush=True)
        if la > 0.5:
            print(f"warning: load average is {la:.2f}: other work shares the CPUs, the numbers "
                  "will be noisy", flush=True)
        t = time.monotonic()
        create_backing_file(ctx.file, ctx.size)
        print(f"backing file written ({human_size(ctx.size)} random, "
              f"{time.monotonic() - t:.1f}s)", flush=True)

        results, failures = run(ctx, rows, jobs)
        summary = summarize(ctx, rows, jobs, results)
        text = table(rows, jobs, summary)
        info["loadavg_end"] = loadavg()
        doc = {
            "version": 1,
            "started": datetime.datetime.fromtimestamp(started_at).isoformat(timespec="seconds"),
            "duration_s": round(time.time() - started_at, 1),
            "smoke": ctx.smoke,
            "settings": {"runtime_s": ctx.runtime, "rounds": ctx.rounds, "size": ctx.size,
                         "export": EXPORT, "clk_tck": CLK_TCK},
            "machine": info,
            "servers": [{"name": r.name, "title": r.title} for r in rows],
            "jobs": jobs,
            "started_processes": ctx.started_info,
            "rows": summary,
            "failures": failures,
        }
        with open(os.path.join(ctx.out, "summary.json"), "w") as f:
            json.dump(doc, f, indent=1)
        with open(os.path.join(ctx.out, "table.txt"), "w") as f:
            f.write(text + "\n")
        print()
        print(text)
        print()
        print(f"machine: {info['cpu']}, {info['cpus']} CPUs, {info['memory_gib']} GiB, "
              f"kernel {info['kernel']}, {info['os']}; backing file on {info['backing_fs']}; "
              f"load {info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}")
        print(f"wrote {os.path.join(ctx.out, 'summary.json')} (raw fio JSON in "
              f"{os.path.join(ctx.out, 'raw')})")
        if failures:
            print(f"\n{len(failures)} run(s) FAILED:", file=sys.stderr)
            for f_ in failures:
                print("  - " + f_.splitlines()[0], file=sys.stderr)
            status = EXIT_FAILED
    except BenchError as e:
        print(f"bench.py: {e}", file=sys.stderr)
        status = EXIT_FAILED
    except Interrupted as e:
        print(f"bench.py: interrupted ({e}); stopping servers", file=sys.stderr)
        status = 128 + getattr(signal, str(e), signal.SIGTERM)
    finally:
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)       # finish cleaning up first
        for server in list(getattr(ctx, "started", [])):
            try:
                server.stop()
            except Exception as e:                  # keep stopping the others
                print(f"bench.py: stopping {server.row}: {e}", file=sys.stderr)
        if args.keep:
            print(f"kept {ctx.work}")
        else:
            shutil.rmtree(ctx.work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
