#!/usr/bin/env python3
"""Randomized fencing test (issue 4, "Fencing test"; DESIGN.md §4): after a lease break
returns, no write of the old holder ever reaches the disk.

Four writer processes (fencing_writer.py, python + libnbd), holders w1..w4, keep trying to
take the write lease on one 2 MiB catalog volume. While admitted, each writes random
4 KiB blocks with FUA, four in flight, every block tagged (holder, generation it was
admitted under as the lease API shows right after GO, sequence number, block index,
checksum), and logs every write it issues and every reply. w4 reaches blockd through a
small loopback TCP proxy in this process that can hold back its packets.

The harness, seeded (the seed is printed; BLOCKD_TEST_SEED replays one), runs TRIALS
trials (env BLOCKD_FENCING_TRIALS, default 200). Each trial lets the writers run a
little, then does one random thing:
  * break the lease to another writer, or to nobody;
  * SIGSTOP the holder, sleep past the lease grace, break, SIGCONT it (its queued
    requests reach the server after the break);
  * hold back w4's packets in the proxy (after making w4 the holder), break, and only
    then let the held requests through;
  * SIGKILL blockd in the middle of the writes and restart it on the same state dir
    (the catalog's last writer keeps its lease for the grace period);
  * SIGSTOP and SIGCONT the holder without a break (a connected lease must not expire);
and then checks the volume. A writer whose lease was broken is barred; the harness
acquires the lease for a writer from time to time so that nobody stays barred.

The checker, at each check and after every break (the volume's backing file is read
directly: that is what a SIGKILL leaves):
  1. every non-zero block is an intact tagged block for its position;
  2. its (holder, generation) agrees with who held that generation (from the writers'
     admissions and the lease API's answers to the harness; two holders for one
     generation is a violation too);
  3. it is a write its holder issued;
  4. no acknowledged write is lost: the block is the newest acknowledged write to it,
     in (generation, sequence) order, or a newer one that was issued (across SIGKILL
     of blockd too: the writes are FUA);
  5. a block that changed since the previous read of the volume, when a break to
     generation N had returned before that read, carries a generation >= N (the
     snapshot taken right after each break is such a read);
  6. no write acknowledged with success was issued after a break had returned that
     ended its generation ("requests of the old holder that arrive after the break get
     an error reply, never success").

Control: the same harness against a blockd built with -DBLOCKD_TEST_SKIP_FENCE=ON (env
BLOCKD_NOFENCE_BIN; tests/run.sh builds build-nofence/server/blockd) for
CONTROL_TRIALS trials (env BLOCKD_FENCING_CONTROL_TRIALS, default 30) must report
violations; the test fails if it reports none, or if BLOCKD_NOFENCE_BIN is missing.

A buffered read of the backing file can race a write of the same page and see it half
copied; such a block is read again until it is whole (a block torn on disk stays torn).

Bounded: every wait has a timeout; the trials stop early when 3/4 of the time budget is
used; the watchdog ends the test after 840 s, under ctest's 900 s (env
BLOCKD_FENCING_TIMEOUT).

CI mode measured: 200 trials in 60 s and 30 control trials in 18 s (78 s under ctest).

Longer run, 2026-12-01: BLOCKD_FENCING_TRIALS=2000 BLOCKD_FENCING_TIMEOUT=3000, seed
3750158572: 2000 trials in 648 s, 0 violations (1724 breaks fencing 1668 sessions, 401
SIGKILLs of blockd, 394 breaks of a SIGSTOPped holder, 398 breaks while the proxy held
requests, 900,964 acknowledged writes); the control, 30 trials against the skip-fence
blockd, reported 166,954 violations (149,011 successes for writes sent after a break,
10,669 writes of broken generations landing after the break, 7,274 acknowledged writes
lost).
"""
import bisect
import collections
import http.client
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, HERE)
import blockd_fixture as fx  # noqa: E402
import fencing_writer as fw  # noqa: E402

TRIALS = int(os.environ.get("BLOCKD_FENCING_TRIALS", "200"))
CONTROL_TRIALS = int(os.environ.get("BLOCKD_FENCING_CONTROL_TRIALS", "30"))
TIMEOUT = int(os.environ.get("BLOCKD_FENCING_TIMEOUT", "840"))
VOLUME = "vol"
SIZE = 2 << 20
BLOCKS = SIZE // fw.BLOCK
GRACE = 0.3            # --lease-grace: also the restart grace
HOLDERS = ["w1", "w2", "w3", "w4"]
PROXIED = "w4"         # reaches blockd through the proxy
MAX_REPORTED = 5       # violations of each kind printed in full per run
KINDS = {                  # the checker's rules (see the docstring)
    "corrupt": "1: torn or foreign block",
    "owner": "2: block of a holder that did not hold its generation",
    "claim": "2: two holders for one generation",
    "two": "2: two write holders at once",
    "unknown": "3: write nobody issued",
    "lost": "4: acknowledged write lost",
    "late": "5: broken generation's write landed after the break",
    "ack-after-break": "6: success for a write issued after the break",
    "stop-lost": "a connected holder lost its lease",
}


# --- control API ------------------------------------------------------------------
def call(sock, method, path, body=None, timeout=70):
    conn = fx.UnixHTTPConnection(sock, timeout=timeout)
    try:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        text = r.read().decode()
        return r.status, (json.loads(text) if text.strip() else None)
    finally:
        conn.close()


# --- the loopback proxy -------------------------------------------------------------
class Proxy:
    """127.0.0.1 TCP proxy to blockd. While the gate is closed, client->server bytes are
    held here (in memory) and sent when it opens, so requests sent before a break reach
    the server after it."""

    def __init__(self):
        self.upstream_port = None
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.gate = threading.Event()
        self.gate.set()
        self.held_bytes = 0   # bytes held back while the gate was closed (for the stats)
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close_gate(self):
        self.gate.clear()

    def open_gate(self):
        self.gate.set()

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client, server):
        held = b""
        try:
            while not self.stopping:
                r, _, _ = select.select([client, server], [], [], 0.005)
                if server in r:
                    data = server.recv(65536)
                    if not data:
                        return
                    client.sendall(data)
                if client in r:
                    data = client.recv(65536)
                    if not data:
                        return
                    held += data
                    if not self.gate.is_set():
                        self.held_bytes += len(data)
                if held and self.gate.is_set():
                    server.sendall(held)
                    held = b""
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def stop(self):
        self.stopping = True
        self.listener.close()


# --- the model and the checker --------------------------------------------------------
class Model:
    """Everything the writers logged and the harness saw, and the checks on it."""

    def __init__(self, label):
        self.label = label
        self.offsets = {h: 0 for h in HOLDERS}
        # What the writers issued, compactly: a writer's sequence numbers only go up, so a
        # session is one range of them; plus the issue time of each write not yet answered.
        self.sessions = {h: collections.defaultdict(list) for h in HOLDERS}  # gen -> [[first, last]]
        self.current = {h: None for h in HOLDERS}   # the range being filled
        self.pending = {}                           # (holder, gen, seq) -> issue time
        self.best_acked = [None] * BLOCKS           # block -> (gen, seq, holder)
        self.holder_of = {}                         # generation -> holder ("" = nobody)
        self.holder_source = {}
        self.break_times = []                       # when each break returned (monotonic)
        self.break_floors = []                      # the highest generation broken to by then
        self.floor = 0                              # generation of the last break returned
        self.prev = None                            # previous read: (blocks, floor then)
        self.violations = []
        self.seen = set()
        self.kinds = collections.Counter()         # violations by checker rule
        self.stats = collections.Counter()

    def violation(self, key, text):
        if key in self.seen:
            return
        self.seen.add(key)
        self.violations.append(text)
        self.kinds[key[0]] += 1
        if self.kinds[key[0]] <= MAX_REPORTED:
            print(f"  VIOLATION [{self.label}] ({KINDS.get(key[0], key[0])}) {text}", flush=True)

    def claim(self, generation, holder, source):
        known = self.holder_of.get(generation)
        if known is None:
            self.holder_of[generation] = holder
            self.holder_source[generation] = source
        elif known != holder:
            self.violation(("claim", generation, holder),
                           f"generation {generation} held by {known!r} ({self.holder_source[generation]}) "
                           f"and by {holder!r} ({source})")

    def add_break(self, t_returned, generation):
        # Breaks are ours and one at a time, so their return times only go up.
        self.floor = max(self.floor, generation)
        self.break_times.append(t_returned)
        self.break_floors.append(self.floor)

    def floor_at(self, t):
        """The highest generation a break had moved to when it returned before time t."""
        i = bisect.bisect_left(self.break_times, t)
        return self.break_floors[i - 1] if i else 0

    def read_logs(self, logs):
        for holder, path in logs.items():
            with open(path, "rb") as f:
                f.seek(self.offsets[holder])
                data = f.read()
            end = data.rfind(b"\n") + 1
            self.offsets[holder] += end
            for line in data[:end].decode().splitlines():
                self._line(holder, line.split())

    def _line(self, holder, f):
        kind = f[0]
        if kind == "I":
            gen, seq = int(f[1]), int(f[2])
            self.pending[(holder, gen, seq)] = float(f[4])
            run = self.current[holder]
            if run is None or run[0] != gen:
                run = self.current[holder] = [gen, seq, seq]
                self.sessions[holder][gen].append(run)
            run[2] = seq
            self.stats["writes issued"] += 1
        elif kind == "A":
            gen, seq, block = int(f[1]), int(f[2]), int(f[3])
            self.stats["writes acknowledged"] += 1
            key = (gen, seq, holder)
            if self.best_acked[block] is None or key[:2] > self.best_acked[block][:2]:
                self.best_acked[block] = key
            t_issued = self.pending.pop((holder, gen, seq))
            floor = self.floor_at(t_issued)
            if gen < floor:
                self.violation(("ack-after-break", holder, gen, seq),
                               f"{holder}'s write #{seq} to block {block} under generation {gen} was issued "
                               f"after a break to generation {floor} had returned, and it was acknowledged "
                               f"with success")
        elif kind == "E":
            self.pending.pop((holder, int(f[1]), int(f[2])), None)
            self.stats[f"writes failed (errno {f[4]})"] += 1
        elif kind == "G":
            self.current[holder] = None
            self.stats["admissions"] += 1
            self.claim(int(f[1]), holder, f"{holder} after its GO")
        elif kind == "X":
            self.stats["sessions ended"] += 1
        elif kind == "R":
            self.stats["GOs not used (lease changed meanwhile)"] += 1

    def read_volume(self, path):
        with open(path, "rb") as f:
            data = f.read()
            blocks = [data[i * fw.BLOCK:(i + 1) * fw.BLOCK] for i in range(BLOCKS)]
            # A buffered read racing a buffered write of the same page can see it half
            # copied (the page cache does not serialize them): read such a block again
            # until it is whole. A block torn on disk stays torn and is reported.
            for b in range(BLOCKS):
                for _ in range(50):
                    try:
                        fw.unpack(blocks[b], b)
                        break
                    except ValueError:
                        self.stats["blocks read again (read raced a write)"] += 1
                        time.sleep(0.002)
                        blocks[b] = os.pread(f.fileno(), fw.BLOCK, b * fw.BLOCK)
        return blocks

    def sample(self, path, logs, why):
        """Read the logs, then the volume, then the logs again, and check the volume."""
        self.read_logs(logs)
        acked = list(self.best_acked)   # acknowledged before the volume was read
        floor = self.floor              # breaks that returned before the volume was read
        blocks = self.read_volume(path)
        self.read_logs(logs)            # issues of writes that landed meanwhile
        self.stats["volume reads"] += 1
        for b, data in enumerate(blocks):
            self._check_block(b, data, acked[b], why)
        self.prev = (blocks, floor)

    def _check_block(self, b, data, acked, why):
        try:
            tag = fw.unpack(data, b)
        except ValueError as e:
            self.violation(("corrupt", b, data[:64]), f"block {b} ({why}): {e}")
            return
        if tag is not None:
            holder, gen, seq = tag
            owner = self.holder_of.get(gen)
            if owner != holder:
                self.violation(("owner", b, tag),
                               f"block {b} ({why}) was written by {holder} under generation {gen}, "
                               f"but generation {gen} belongs to {owner!r}")
            runs = self.sessions[holder].get(gen, []) if holder in self.sessions else []
            if not any(first <= seq <= last for _, first, last in runs):
                self.violation(("unknown", b, tag), f"block {b} ({why}) holds {tag}, a write nobody issued")
        if acked is not None:
            if tag is None or (tag[1], tag[2]) < acked[:2]:
                self.violation(("lost", b, acked, tag),
                               f"block {b} ({why}): acknowledged write #{acked[1]} of {acked[2]} under "
                               f"generation {acked[0]} is lost; the block holds {tag}")
        if self.prev is not None:
            before, floor = self.prev
            if data != before[b] and tag is not None and tag[1] < floor:
                self.violation(("late", b, tag),
                               f"block {b} ({why}) changed after a break to generation {floor} had returned, "
                               f"to a write of {tag[0]} under the broken generation {tag[1]} (#{tag[2]})")


# --- one run: blockd, the writers, the trials ----------------------------------------------
class Run:
    def __init__(self, binary, trials, seed, label):
        self.binary = binary
        self.trials = trials
        self.rng = random.Random(f"{seed}/{label}")
        self.seed = seed
        self.label = label
        self.model = Model(label)
        self.tmp = fx.temp_dir(f"blockd-fencing-{label}-")
        self.state = os.path.join(self.tmp.name, "state")
        os.mkdir(self.state)
        self.blockd = None
        self.proxy = Proxy()
        self.writers = {}
        self.logs = {h: os.path.join(self.tmp.name, f"{h}.log") for h in HOLDERS}
        self.port_files = {h: os.path.join(self.tmp.name, "proxy-port" if h == PROXIED else "port")
                           for h in HOLDERS}
        self.actions = collections.Counter()
        fx.on_timeout(self.cleanup)

    # blockd
    def start_blockd(self):
        b = fx.Blockd(state_dir=self.state, extra=["--lease-grace", str(GRACE)])
        b.args[0] = self.binary
        self.blockd = b.start()
        self.proxy.upstream_port = b.port
        for path, port in ((os.path.join(self.tmp.name, "port"), b.port),
                           (os.path.join(self.tmp.name, "proxy-port"), self.proxy.port)):
            with open(path + ".tmp", "w") as f:
                f.write(str(port))
            os.rename(path + ".tmp", path)

    def api(self, method, path, body=None):
        return call(self.blockd.control_socket, method, path, body)

    def lease(self):
        status, body = self.api("GET", f"/v1/volumes/{VOLUME}/lease")
        if status != 200:
            raise fx.TestFailure(f"GET lease answered {status} {body}")
        self.note_lease(body, "GET lease")
        return body

    def note_lease(self, lease, source):
        holders = [h["holder"] for h in lease.get("holders", []) if h.get("mode") == "rw"]
        if lease.get("state") == "breaking":
            return
        if len(holders) > 1:
            self.model.violation(("two", lease["generation"]), f"two write holders at once: {lease}")
        # A free lease still shows the generation of its last holder; only a break's answer
        # says that a generation has no holder at all.
        if holders or source.startswith("break"):
            self.model.claim(int(lease["generation"]), holders[0] if holders else "", source)

    def current_holder(self):
        holders = [h for h in self.lease().get("holders", []) if h.get("mode") == "rw"]
        return holders[0] if holders else None

    # writers
    def start_writers(self):
        for path in self.logs.values():
            open(path, "wb").close()
        for h in HOLDERS:
            self.writers[h] = subprocess.Popen(
                [fx.SYSTEM_PYTHON, os.path.join(HERE, "fencing_writer.py"), h, VOLUME, self.port_files[h],
                 self.blockd.control_socket, self.logs[h], str(BLOCKS), str(self.seed)],
                stdin=subprocess.PIPE)

    def stop_writers(self):
        for p in self.writers.values():
            try:
                os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            p.stdin.close()
        for h, p in self.writers.items():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
                raise fx.TestFailure(f"writer {h} did not exit within 15 s of its stdin closing")

    def cleanup(self):
        for p in self.writers.values():
            if p.poll() is None:
                p.kill()
        self.proxy.stop()

    # actions
    def breaks(self, to=None, why="break"):
        body = {"toHolder": to} if to else None
        t0 = time.monotonic()
        status, answer = self.api("POST", f"/v1/volumes/{VOLUME}/lease/break", body)
        t = time.monotonic()
        if status != 200:
            # The only acceptable refusal: another break running (there is none: breaks are ours).
            raise fx.TestFailure(f"break ({why}) answered {status} {answer}")
        lease = answer["lease"]
        generation = int(lease["generation"])
        self.model.add_break(t, generation)
        self.note_lease(lease, f"break response ({why})")
        self.model.stats["breaks"] += 1
        self.model.stats["sessions fenced"] += answer.get("fencedConnections", 0)
        self.model.stats["longest break (ms)"] = max(self.model.stats["longest break (ms)"],
                                                     int((t - t0) * 1000))
        # The snapshot right after the break returned.
        self.model.sample(self.volume_path, self.logs, f"snapshot after {why} to generation {generation}")
        return answer

    def random_break(self, why, holder=None):
        """Break to another writer or to nobody (never to the holder being broken)."""
        holder = holder if holder is not None else self.current_holder()
        others = [h for h in HOLDERS if h != (holder["holder"] if holder else None)]
        to = self.rng.choice(others) if self.rng.random() < 0.7 else None
        return self.breaks(to, why + (f" to {to}" if to else " to nobody"))

    def wait_connected(self, who, timeout=2.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            h = self.current_holder()
            if h and h["holder"] == who and h["connections"] >= 1:
                return True
            time.sleep(0.01)
        return False

    def ensure_someone(self):
        """Acquire the lease for a writer when nobody holds it (broken writers are barred)."""
        lease = self.lease()
        if lease.get("state") == "free" and self.rng.random() < 0.6:
            who = self.rng.choice(HOLDERS)
            status, answer = self.api("POST", f"/v1/volumes/{VOLUME}/lease/acquire", {"holder": who})
            if status == 200:
                self.note_lease(answer, f"acquire for {who}")
                self.model.stats["acquires"] += 1

    def writer_pid(self, holder):
        return self.writers[holder].pid

    def trial(self, i):
        for h, p in self.writers.items():
            if p.poll() is not None:
                raise fx.TestFailure(f"[{self.label}] writer {h} exited with {p.returncode} (see its traceback above)")
        self.ensure_someone()
        time.sleep(self.rng.uniform(0.03, 0.2))
        action = self.rng.choices(
            ["break", "stop-break-cont", "proxy-delay-break", "kill-restart", "stop-cont"],
            weights=[30, 20, 20, 20, 10])[0]
        self.actions[action] += 1
        if action == "break":
            self.random_break("break")
        elif action == "stop-break-cont":
            holder = self.current_holder()
            if holder is None or holder["connections"] == 0:
                self.actions["(no connected holder to stop)"] += 1
                self.random_break("break")
            else:
                pid = self.writer_pid(holder["holder"])
                os.kill(pid, signal.SIGSTOP)
                try:
                    time.sleep(GRACE + self.rng.uniform(0.02, 0.15))
                    self.random_break(f"break of stopped {holder['holder']}", holder)
                finally:
                    os.kill(pid, signal.SIGCONT)
        elif action == "proxy-delay-break":
            holder = self.current_holder()
            if holder is None or holder["holder"] != PROXIED:
                self.breaks(PROXIED, f"break to {PROXIED} (for the proxy)")
            if not self.wait_connected(PROXIED):
                self.actions["(proxied writer did not connect)"] += 1
                return
            time.sleep(self.rng.uniform(0.0, 0.05))
            self.proxy.close_gate()
            held0 = self.proxy.held_bytes
            try:
                time.sleep(self.rng.uniform(0.01, 0.08))
                self.random_break(f"break of delayed {PROXIED}", {"holder": PROXIED})
            finally:
                self.proxy.open_gate()
            if self.proxy.held_bytes > held0:
                self.model.stats["proxy: breaks with held requests"] += 1
            time.sleep(0.02)
        elif action == "kill-restart":
            self.blockd.kill()
            self.model.stats["blockd SIGKILLs"] += 1
            self.model.sample(self.volume_path, self.logs, "after SIGKILL of blockd")
            self.start_blockd()
        elif action == "stop-cont":
            holder = self.current_holder()
            if holder is not None and holder["connections"] > 0:
                pid = self.writer_pid(holder["holder"])
                os.kill(pid, signal.SIGSTOP)
                time.sleep(GRACE + self.rng.uniform(0.02, 0.1))
                after = self.current_holder()
                os.kill(pid, signal.SIGCONT)
                if after is None or after["holder"] != holder["holder"]:
                    self.model.violation(("stop-lost", i),
                                         f"trial {i}: {holder['holder']} lost its lease while connected "
                                         f"(SIGSTOPped past the grace); lease now {after}")
        self.model.sample(self.volume_path, self.logs, f"check after trial {i} ({action})")

    def run(self, deadline):
        t0 = time.monotonic()
        self.start_blockd()
        status, answer = self.api("POST", "/v1/volumes", {"name": VOLUME, "size": str(SIZE)})
        if status != 201:
            raise fx.TestFailure(f"creating the volume answered {status} {answer}")
        self.volume_path = answer["backingPath"]
        self.start_writers()
        end = time.monotonic() + 20
        while not (self.current_holder() or {}).get("connections"):
            if time.monotonic() > end:
                raise fx.TestFailure(f"[{self.label}] no writer was admitted within 20 s of starting")
            time.sleep(0.02)
        done = 0
        try:
            for i in range(self.trials):
                if time.monotonic() > deadline:
                    print(f"[{self.label}] stopping after {i} trials: time budget used up", flush=True)
                    break
                self.trial(i)
                done += 1
                if done % 50 == 0:
                    print(f"[{self.label}] {done} trials, {len(self.model.violations)} violations, "
                          f"{time.monotonic() - t0:.0f}s", flush=True)
        finally:
            self.stop_writers()
        self.model.read_logs(self.logs)
        self.model.sample(self.volume_path, self.logs, "final check")
        self.blockd.stop()
        self.proxy.stop()
        self.elapsed = time.monotonic() - t0
        self.done = done
        print(f"[{self.label}] {done} trials in {self.elapsed:.1f}s; actions: {dict(self.actions)}")
        print(f"[{self.label}] {dict(sorted(self.model.stats.items()))}")
        print(f"[{self.label}] violations: {len(self.model.violations)} "
              f"{ {KINDS[k]: n for k, n in self.model.kinds.items()} }", flush=True)
        return self


def body(c):
    seed = int(os.environ.get("BLOCKD_TEST_SEED", str(random.SystemRandom().randrange(1 << 32))))
    print(f"seed {seed} (replay with BLOCKD_TEST_SEED={seed}); {TRIALS} trials, control {CONTROL_TRIALS}",
          flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("FAIL: SIGTERM"))  # cleanup still runs
    nofence = os.environ.get("BLOCKD_NOFENCE_BIN", "")
    c.require(nofence and os.access(nofence, os.X_OK),
              "the skip-fence blockd for the control exists (BLOCKD_NOFENCE_BIN)",
              f"BLOCKD_NOFENCE_BIN={nofence!r} is not an executable; build it with: cmake -S . -B build-nofence "
              "-G Ninja -DBLOCKD_TEST_SKIP_FENCE=ON -DBLOCKD_TESTS=OFF && cmake --build build-nofence "
              "--target blockd (tests/run.sh does)")
    start = time.monotonic()
    real = Run(fx.blockd_bin(), TRIALS, seed, "blockd").run(start + TIMEOUT * 0.75)
    m = real.model
    c.ok(real.done == TRIALS, f"{real.done} of {TRIALS} trials ran")
    c.ok(not m.violations, f"blockd: no fencing violation in {real.done} trials (seed {seed})",
         f"{len(m.violations)} violations, first: {m.violations[:5]}")
    # The test is not vacuous: the faults happened and writes were acknowledged around them.
    c.ok(m.stats["breaks"] >= TRIALS // 4 and m.stats["sessions fenced"] >= TRIALS // 8,
         f"{m.stats['breaks']} breaks fenced {m.stats['sessions fenced']} sessions")
    c.ok(m.stats["blockd SIGKILLs"] >= 1 or TRIALS < 20, f"{m.stats['blockd SIGKILLs']} SIGKILLs of blockd")
    c.ok(m.stats["proxy: breaks with held requests"] >= 1 or TRIALS < 20,
         f"{m.stats['proxy: breaks with held requests']} breaks while the proxy held requests")
    c.ok(m.stats["writes acknowledged"] >= 100 * real.done,
         f"{m.stats['writes acknowledged']} writes acknowledged (>= 100 a trial)")

    control = Run(nofence, CONTROL_TRIALS, seed, "control").run(start + TIMEOUT * 0.95)
    kinds = control.model.kinds
    c.ok(len(control.model.violations) > 0,
         f"control: the checker reports violations against the skip-fence blockd "
         f"({len(control.model.violations)} in {control.done} trials)")
    # Not only from the writers' logs: the volume itself shows the late writes.
    c.ok(kinds["late"] + kinds["lost"] > 0,
         f"control: the volume shows them ({kinds['late']} late writes of broken generations, "
         f"{kinds['lost']} acknowledged writes lost)")


if __name__ == "__main__":
    fx.use_system_python()
    fx.test_main(body, timeout=TIMEOUT)
