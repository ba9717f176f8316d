#!/usr/bin/env python3
"""perf/bench.py still works end to end (smoke mode: 1 s per job, one round).

This is not a timed test: it only keeps the benchmark from rotting.

  1. bench.py refuses to run, with exit 3 and a message naming what is missing,
     when a row's program is absent (here: a blockd binary that does not exist);
  2. bench.py --smoke runs every job against every row whose program is
     installed (blockd, blockd's memory backend and fio's local io_uring row
     always; nbdkit, qemu-nbd and nbd-server when present) and exits 0;
  3. summary.json has a row for every server and job, each with IOPS > 0, and,
     for the NBD servers, server CPU time > 0 (the /proc/PID/stat accounting
     works, including nbd-server's per-connection child processes);
  4. one raw fio JSON per run and table.txt were written next to it;
  5. no server process it started is left running, and its work directory
     (the backing file) is gone.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

fx.use_system_python()
import json  # noqa: E402

BENCH = os.path.join(fx.REPO, "perf", "bench.py")
PEERS = {"nbdkit": "nbdkit", "qemu-nbd-writeback": "qemu-nbd", "qemu-nbd-none": "qemu-nbd",
         "nbd-server": "nbd-server"}


def fs_type(path):
    path = os.path.realpath(path)
    best, kind = "", "?"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            mnt = left.split()[4]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, right.split()[0]
    return kind


def run_bench(args, timeout):
    """Run bench.py; on timeout SIGTERM it (so it stops its servers), then SIGKILL."""
    cmd = ["/usr/bin/python3", BENCH] + args
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fx.on_timeout(lambda: proc.poll() is None and proc.send_signal(signal.SIGTERM))
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        raise fx.TestFailure(f"bench.py did not finish within {timeout}s:\n{out}")
    return proc.returncode, out


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return None


def processes_mentioning(text):
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            argv = cmdline(name)
            if argv and any(text in a for a in argv):
                found.append((int(name), " ".join(argv)))
    return found


def body(c):
    fx.require_tools("fio")
    r = fx.run(["fio", "--enghelp"], check=False)
    engines = r.stdout.split()
    if "nbd" not in engines or "io_uring" not in engines:
        fx.skip("this fio lacks the nbd or io_uring ioengine")
    blockd = os.path.abspath(fx.blockd_bin())
    if not os.access(blockd, os.X_OK):
        raise fx.TestFailure(f"blockd binary not found: {blockd}")

    # 1. refuses, clearly, when something is missing
    with fx.temp_dir() as out:
        rc, text = run_bench(["--smoke", "--blockd", "/nonexistent/blockd",
                              "--out", os.path.join(out, "res")], timeout=60)
        c.eq(rc, 3, "bench.py exits 3 when a row's program is missing")
        c.ok("missing" in text and "/nonexistent/blockd" in text,
             "its message names what is missing", text)
        c.ok(not os.path.exists(os.path.join(out, "res")), "and it measured nothing")

    servers = ["io_uring-local", "blockd-memory", "blockd", "blockd-busy-poll", "blockd-direct"]
    for row, tool in PEERS.items():
        if shutil.which(tool, path=fx.SYSTEM_PATH):
            servers.append(row)
        else:
            print(f"     ({tool} is not installed: row {row} left out)")

    # The backing file must be on a disk (qemu-nbd --cache=none uses O_DIRECT).
    base = "/var/tmp"
    if fs_type(base) in ("tmpfs", "ramfs"):
        base = os.path.dirname(blockd)
    with fx.temp_dir() as out, tempfile.TemporaryDirectory(prefix="perf-smoke-", dir=base) as d:
        fx.on_timeout(lambda: shutil.rmtree(d, ignore_errors=True))
        res = os.path.join(out, "results")
        t = time.monotonic()
        rc, text = run_bench(["--smoke", "--runtime", "1", "--servers", ",".join(servers),
                              "--dir", d, "--out", res, "--blockd", blockd], timeout=240)
        print(text)
        print(f"     (bench.py --smoke took {time.monotonic() - t:.0f}s)")
        c.require(rc == 0, "bench.py --smoke exits 0", f"exit code {rc}")

        with open(os.path.join(res, "summary.json")) as f:
            summary = json.load(f)
        jobs = summary["jobs"]
        c.ok(len(jobs) >= 9, "summary lists every job in perf/jobs", f"{jobs}")
        c.eq([s["name"] for s in summary["servers"]], servers, "summary lists the servers run")
        c.eq(summary["failures"], [], "no run failed")
        rows = {(x["server"], x["job"]): x for x in summary["rows"]}
        for s in servers:
            missing, bad_iops, bad_lat, bad_cpu, bad_ratio, bad_busy = [], [], [], [], [], []
            for j in jobs:
                x = rows.get((s, j))
                if x is None:
                    missing.append(j)
                    continue
                m = x["median"]
                if not (m["iops"] and m["iops"] > 0 and m["mb_s"] > 0):
                    bad_iops.append(f"{j}: {m['iops']}")
                if not (m["p50_us"] > 0 and m["p99_us"] >= m["p50_us"]):
                    bad_lat.append(f"{j}: p50 {m['p50_us']} p99 {m['p99_us']}")
                cpu = m["server_cpu_s_per_mio"]
                if s != "io_uring-local" and not (cpu is not None and cpu > 0):
                    bad_cpu.append(f"{j}: {cpu}")
                if not (m["blockd_ratio"] is not None and m["blockd_ratio"] > 0):
                    bad_ratio.append(j)
                # fio's CPU over the timed run, in % of a core: fio spends some (even on a
                # slow disk's QD1 writes, over 1%), and no more cores than the machine has.
                busy = m["fio_busy_pct"]
                if not (busy is not None and 0.5 < busy <= 105 * (os.cpu_count() or 1)):
                    bad_busy.append(f"{j}: {busy}")
            c.eq(missing, [], f"{s}: a row for every job in summary.json")
            c.eq(bad_iops, [], f"{s}: IOPS and MB/s > 0 in every job")
            c.eq(bad_lat, [], f"{s}: 0 < p50 <= p99 in every job")
            if s != "io_uring-local":
                c.eq(bad_cpu, [], f"{s}: server CPU time per million I/Os measured (> 0) "
                                  "in every job")
            c.eq(bad_ratio, [], f"{s}: blockd's ratio computed in every job")
            c.eq(bad_busy, [], f"{s}: fio's share of a core measured (0.5% to 100% per CPU) "
                               "in every job")
        raws = os.listdir(os.path.join(res, "raw"))
        c.eq(len(raws), len(servers) * len(jobs), "one raw fio JSON per run")
        c.ok(os.path.getsize(os.path.join(res, "table.txt")) > 0, "table.txt written")
        c.ok("== randread-4k-qd32" in text and "blockd/x" in text and "fio busy" in text,
             "the table was printed")

        # 5. nothing left running, work directory gone
        started = summary["started_processes"]
        c.ok(len(started) == len(servers) - 1,
             "every NBD server start was recorded", f"{started}")
        for p in started:
            argv = cmdline(p["pid"])
            c.ok(argv is None or argv != p["argv"],
                 f"{p['row']} (pid {p['pid']}) is not running any more", " ".join(argv or []))
        left = processes_mentioning(d)
        c.eq(left, [], "no process refers to the benchmark's directory")
        c.eq(os.listdir(d), [], "bench.py removed its work directory and backing file")


if __name__ == "__main__":
    fx.test_main(body, timeout=290)
