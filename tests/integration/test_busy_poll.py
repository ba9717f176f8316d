#!/usr/bin/env python3
"""--busy-poll-us: a busy-polling blockd serves a real client correctly, and stops
spinning once it is idle.

  serve      python3-libnbd, 2 connections to a file volume: 2000 pipelined 4 KiB writes
             of random data, read back and compared, plus FLUSH; a read-after-write
             loop at queue depth 1 (the case busy polling is for)
  idle       after the traffic, blockd's CPU time over 1.5 s of idleness stays under
             0.15 s: the workers went back to sleep (a worker that never stopped
             polling would burn about 1.5 s)
  gives way  a polling worker pinned to one CPU with a CPU-bound process beside it:
             the process gets most of that CPU (a worker that spun without yielding
             would take its fair half)
  config     busy_poll_us from the config file reaches the workers; the flag wins over
             the file; an out-of-range value is refused with exit 2 and a message
"""
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

nbd = fx.import_libnbd()

KiB = 1 << 10
MiB = 1 << 20
BLOCK = 4 * KiB
SIZE = 64 * MiB
WRITES = 2000
QD1_ROUNDS = 300
SEED = int(os.environ.get("BLOCKD_TEST_SEED", str(int(time.time()))))


def cpu_seconds(pid):
    """utime + stime of every thread of `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def wait_all(h):
    deadline = time.monotonic() + 60
    while h.aio_in_flight() > 0:
        if time.monotonic() > deadline:
            raise fx.TestFailure(f"{h.aio_in_flight()} requests still in flight after 60 s")
        h.poll(1)


def serve(c, server, rng):
    handles = [connect(server.uri("disk")) for _ in range(2)]
    blocks = rng.sample(range(SIZE // BLOCK), WRITES)
    data = {b: rng.randbytes(BLOCK) for b in blocks}
    for i, b in enumerate(blocks):
        handles[i % 2].aio_pwrite(data[b], b * BLOCK)
    for h in handles:
        wait_all(h)
    for h in handles:
        h.flush()
    wrong = [b for i, b in enumerate(blocks) if handles[(i + 1) % 2].pread(BLOCK, b * BLOCK) != data[b]]
    c.ok(not wrong, f"{WRITES} pipelined writes over 2 connections read back byte for byte "
                    f"from the other connection", f"{len(wrong)} blocks differ, first {wrong[:5]}")

    h = handles[0]
    mismatches = 0
    for _ in range(QD1_ROUNDS):
        b = rng.randrange(SIZE // BLOCK)
        payload = rng.randbytes(BLOCK)
        h.pwrite(payload, b * BLOCK)
        if h.pread(BLOCK, b * BLOCK) != payload:
            mismatches += 1
    c.eq(mismatches, 0, f"{QD1_ROUNDS} read-after-write round trips at queue depth 1 see their own data")
    for h in handles:
        h.shutdown()


def idle(c, server):
    time.sleep(0.2)  # past the polling window of the last request
    before = cpu_seconds(server.proc.pid)
    time.sleep(1.5)
    used = cpu_seconds(server.proc.pid) - before
    c.ok(used < 0.15, f"idle for 1.5 s after the traffic, blockd used {used:.2f} s of CPU (< 0.15 s)",
         "the workers kept polling instead of sleeping")


def pin_threads(pid, cpu):
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def gives_way(c):
    """While a worker polls it yields the CPU to whoever else is runnable there.

    One worker, polling 10 ms after each request, gets a read every 2 ms, so it never
    stops polling. It shares a CPU with a CPU-bound process; the test itself runs on
    another CPU. A worker that spins without yielding takes its fair share, about half
    of that CPU. One that yields takes little: the other process gets most of it.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("SKIP check 'gives way': needs 2 CPUs, this process may use only", cpus)
        return
    shared, mine = cpus[0], cpus[1]
    window = 1.5
    server = fx.Blockd(["name=m,backend=memory,size=1MiB"], extra=["--workers", "1", "--busy-poll-us", "10000"])
    os.sched_setaffinity(0, {mine})
    hog = None
    try:
        with server:
            pin_threads(server.proc.pid, shared)
            h = connect(server.uri("m"))
            hog = subprocess.Popen([sys.executable, "-c",
                                    "import os, time\n"
                                    f"os.sched_setaffinity(0, {{{shared}}})\n"
                                    f"end = time.monotonic() + {window + 3}\n"
                                    "while time.monotonic() < end: pass\n"])
            time.sleep(0.3)  # the hog is up and spinning
            blockd_before, hog_before = cpu_seconds(server.proc.pid), cpu_seconds(hog.pid)
            running = fx.deadline(window)
            reads = 0
            while running():
                h.pread(BLOCK, 0)
                reads += 1
                time.sleep(0.002)
            blockd_used = cpu_seconds(server.proc.pid) - blockd_before
            hog_used = cpu_seconds(hog.pid) - hog_before
            h.shutdown()
    finally:
        if hog is not None:
            hog.kill()
            hog.wait(10)
        os.sched_setaffinity(0, set(cpus))
    share = hog_used / max(blockd_used + hog_used, 1e-9)
    c.ok(share > 0.75, f"a polling worker gives way: beside it on CPU {shared}, a CPU-bound process got "
                       f"{share:.0%} of the CPU time ({hog_used:.2f} s against blockd's {blockd_used:.2f} s, "
                       f"{reads} reads in {window} s; > 75 %)",
         "the worker spun without yielding: it took about its fair half of the CPU")


def config(c, d):
    conf = os.path.join(d, "blockd.toml")
    with open(conf, "w") as f:
        f.write("busy_poll_us = 40\n")
    from_file = fx.Blockd(["name=m,backend=memory,size=1MiB"], extra=["--config", conf])
    with from_file:
        c.ok("busy_poll_us=40" in from_file.log, "busy_poll_us from the config file reaches the workers",
             from_file.log[-600:])
    overridden = fx.Blockd(["name=m,backend=memory,size=1MiB"], extra=["--config", conf, "--busy-poll-us", "0"])
    with overridden:
        c.ok("busy_poll_us=0" in overridden.log, "--busy-poll-us on the command line wins over the file",
             overridden.log[-600:])
    r = subprocess.run([fx.blockd_bin(), "--busy-poll-us", "20000", "--volume", "name=m,backend=memory,size=1MiB"],
                       capture_output=True, text=True, timeout=20)
    c.ok(r.returncode == 2 and "--busy-poll-us" in r.stderr and "10000" in r.stderr,
         "--busy-poll-us 20000 is refused with exit 2, naming the flag and its range",
         (r.returncode, r.stderr.strip()))


def body(c):
    rng = random.Random(SEED)
    print(f"seed {SEED} (BLOCKD_TEST_SEED)")
    with fx.temp_dir() as d:
        image = os.path.join(d, "disk.img")
        server = fx.Blockd([f"name=disk,path={image},size={SIZE}"], extra=["--busy-poll-us", "100"])
        with server:
            c.require("busy_poll_us=100" in server.log, "blockd logs busy_poll_us=100 at start", server.log[-600:])
            serve(c, server, rng)
            idle(c, server)
        gives_way(c)
        config(c, d)


if __name__ == "__main__":
    fx.test_main(body, timeout=240)
