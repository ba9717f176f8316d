#!/usr/bin/env python3
"""blockctl against a real blockd, judged by nbdinfo, nbdsh/libnbd, qemu-img and the files.

  lifecycle   volume create -> nbdinfo sees it with its size -> write with nbdsh ->
              restart blockd (same state dir) -> catalog (blockctl -o json) and data intact;
              resize grows what a new NBD connection sees; list/show/class list/status
  images      a qcow2 with data at known places -> qemu-img convert to raw -> volume import
              (verified, sparse on the volume's file) -> qemu-img compare against the volume ->
              volume export (byte-identical, sparse) -> export to a pipe; stdin import; an image
              larger than the volume is refused with both sizes and nothing written
  bad-input   bad size, bad name, unknown volume, shrink, unknown class, name taken, missing
              argument, unreachable server, delete while a libnbd client is connected: exit 1
              or 2, a clear message, and neither the catalog nor the files change
  delete      frees the file; the export is gone from NBD
  help        --help on every command exits 0; bash completion parses and completes
  leases      libnbd connects as holder node-a: lease list/show/volume list show it with 1 connection
              and the generation; lease break --to node-b reports node-a fenced and generation +1;
              node-a's next write fails; node-b reads what node-a had flushed; release, acquire
              (re-admits the broken node-a) and renew with --ttl, checked against the API's
              expiresAt; unknown volume, bad holder, bad --ttl, a holder that holds nothing
  status      around libnbd writes as holder node-r: holder, 1 connection, WRITE/s > 0, then 0 with no
              I/O; rate x interval is exactly the workload (-o json); a bad state file is ignored
  peer        import/export with --nbd against qemu-nbd (another server's NBD, not blockd's):
              byte-identical round trip, qemu-nbd's file stays sparse

Environment: BLOCKCTL_BIN (default build/tools/blockctl), BLOCKD_BIN (see blockd_fixture).
blockctl runs with BLOCKCTL_STATE_DIR in the test's temp dir (status's state file).
"""
import calendar
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

nbd = fx.import_libnbd()

MiB = 1 << 20
IMAGE_SIZE = 48 * MiB
# With leases (DESIGN.md section 4) a writer keeps its volume for a grace period after it
# disconnects; resize and delete wait for it, and a client of another holder (TCP
# 127.0.0.1 vs a Unix-socket client) is refused meanwhile. A short grace and settle()
# between such steps keep the test about blockctl, not about lease timing.
LEASE_GRACE = 0.5
# BLOCKCTL_STATE_DIR for every blockctl run (set in run_all).
STATE_DIR = None


def blockd_extra():
    r = subprocess.run([fx.blockd_bin(), "--help"], capture_output=True, text=True, timeout=30)
    return ["--lease-grace", str(LEASE_GRACE)] if "--lease-grace" in r.stdout + r.stderr else []


def settle():
    time.sleep(LEASE_GRACE * 3)


def blockctl_bin():
    return os.environ.get("BLOCKCTL_BIN", os.path.join(fx.REPO, "build", "tools", "blockctl"))


class Blockctl:
    """Runs blockctl against one blockd (BLOCKD_SERVER), returns CompletedProcess."""

    def __init__(self, control_socket):
        self.server = "unix://" + control_socket

    def __call__(self, *args, stdin=None, timeout=120, server=True):
        env = dict(os.environ)
        env["PATH"] = fx.SYSTEM_PATH + ":" + env.get("PATH", "")
        if STATE_DIR:  # blockctl status keeps its previous sample here, not in the real place
            env["BLOCKCTL_STATE_DIR"] = STATE_DIR
        if server:
            env["BLOCKD_SERVER"] = self.server
        else:
            env.pop("BLOCKD_SERVER", None)
        cmd = [blockctl_bin()] + [str(a) for a in args]
        print("$ " + " ".join(cmd), flush=True)
        try:
            r = subprocess.run(cmd, stdin=stdin, capture_output=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise fx.TestFailure(f"blockctl timed out after {timeout}s: {cmd}")
        r.out = r.stdout.decode(errors="replace")
        r.err = r.stderr.decode(errors="replace")
        for line in (r.out + r.err).splitlines()[:12]:
            print("    " + line)
        return r

    def json(self, *args):
        r = self("-o", "json", *args)
        if r.returncode != 0:
            raise fx.TestFailure(f"blockctl {' '.join(args)} failed ({r.returncode}): {r.err}")
        return json.loads(r.out)


def nbd_size(uri):
    r = fx.run(["nbdinfo", "--size", uri])
    return int(r.stdout.strip())


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def allocated(path):
    return os.stat(path).st_blocks * 512


def snapshot(ctl, state_dir):
    """What a rejected command must not change: the catalog as listed, and the files."""
    listing = [(v["name"], v["sizeBytes"], v["uuid"], v.get("labels", {}))
               for v in ctl.json("volume", "list")["volumes"]]
    return listing, sorted(os.listdir(os.path.join(state_dir, "volumes")))


def check_lifecycle(c, ctl, b):
    r = ctl("volume", "create", "disk", "--size", "64MiB", "--label", "app=test", "--label", "tier=gold",
            "--description", "made by blockctl")
    c.eq(r.returncode, 0, "volume create exits 0")
    c.ok('volume "disk" created' in r.out and "64 MiB" in r.out, "volume create says what it made", r.out)
    shown = ctl.json("volume", "show", "disk")
    c.ok(shown["sizeBytes"] == str(64 * MiB) and shown["labels"] == {"app": "test", "tier": "gold"} and
         shown["description"] == "made by blockctl" and shown["accessModes"] == ["READ_WRITE_ONCE"],
         "-o json volume show is the API's Volume", shown)
    c.eq(nbd_size(b.uri("disk")), 64 * MiB, "nbdinfo sees the new volume with its size")

    r = ctl("volume", "create", "ro", "--size", "1000", "--access-modes", "ReadWriteOnce,ReadOnlyMany")
    c.ok(r.returncode == 0 and "rounded up to 1024" in r.err, "a size that is not a multiple of 512 is rounded "
         "up, and blockctl says so", r.err)
    c.eq(ctl.json("volume", "show", "ro")["accessModes"], ["READ_WRITE_ONCE", "READ_ONLY_MANY"],
         "--access-modes is sent")

    r = ctl("volume", "list")
    lines = r.out.splitlines()
    c.ok(r.returncode == 0 and lines and lines[0].split()[:5] == ["NAME", "SIZE", "CLASS", "ACCESS", "CONNECTIONS"],
         "volume list prints a table with a header", r.out)
    disk_line = [ln for ln in lines if ln.startswith("disk ")]
    c.ok(disk_line and "64 MiB" in disk_line[0] and "app=test,tier=gold" in disk_line[0],
         "the table shows the size in binary units and the labels", r.out)
    r = ctl("-o", "name", "volume", "list", "--label", "app=test")
    c.eq(r.out.split(), ["disk"], "volume list --label filters")
    r = ctl("-o", "name", "volume", "list", "--class", "default")
    c.eq(r.out.split(), ["disk", "ro"], "volume list --class filters")
    r = ctl("class", "list")
    c.ok(r.returncode == 0 and "default" in r.out and "yes" in r.out, "class list shows the default class", r.out)
    r = ctl("status")
    c.ok(r.returncode == 0 and "NBD listen:" in r.out and f"127.0.0.1:{b.port}" in r.out, "status", r.out)

    pattern = b"blockctl" * 8192  # 64 KiB
    fx.run(["nbdsh", "-u", b.uri("disk"), "-c",
            f"h.pwrite({pattern!r} * 16, 1048576); h.pwrite(b'end!' * 128, {64 * MiB - 512}); h.flush()"])
    return pattern * 16


def check_restart(c, ctl, b, written):
    before = snapshot(ctl, b.state_dir)
    c.eq(b.stop(), 0, "blockd stops cleanly")
    # The second run also listens on a Unix socket: import/export must prefer it.
    nbd_sock = os.path.join(b.state_dir, "nbd.sock")
    b2 = fx.Blockd(state_dir=b.state_dir, listen=("127.0.0.1:0", "unix:" + nbd_sock), extra=blockd_extra()).start()
    ctl2 = Blockctl(b2.control_socket)
    c.eq(snapshot(ctl2, b2.state_dir), before, "after a restart the catalog (names, sizes, UUIDs, labels) and "
         "files are as before")
    h = nbd.NBD()
    h.connect_uri(b2.uri("disk"))
    c.ok(h.pread(len(written), MiB) == written and h.pread(512, 64 * MiB - 512) == b"end!" * 128,
         "after a restart the data written with nbdsh is intact")
    h.shutdown()
    settle()
    r = ctl2("volume", "resize", "disk", "--size", "128MiB")
    c.ok(r.returncode == 0 and "128 MiB" in r.out, "volume resize grows", r.out)
    c.eq(nbd_size(b2.uri("disk")), 128 * MiB, "a new NBD connection sees the new size")
    return b2, ctl2


def make_qcow2(work):
    qcow2 = os.path.join(work, "src.qcow2")
    raw = os.path.join(work, "src.raw")
    fx.run(["qemu-img", "create", "-q", "-f", "qcow2", qcow2, str(IMAGE_SIZE)])
    fx.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 1M 2M", "-c", "write -P 0xcd 20M 64k",
            "-c", "write -P 0x11 47M 1M", "-c", "write -z 5M 1M", qcow2])
    fx.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow2, raw])
    return qcow2, raw


def check_images(c, ctl, b, work):
    qcow2, raw = make_qcow2(work)
    c.ok(allocated(raw) < 8 * MiB, "qemu-img made a sparse raw image", allocated(raw))
    r = ctl("volume", "create", "img", "--size", str(IMAGE_SIZE))
    c.require(r.returncode == 0, "create a volume of the image's size", r.err)
    backing = ctl.json("volume", "show", "img")["backingPath"]

    r = ctl("volume", "import", "img", raw)
    c.ok(r.returncode == 0 and "verified" in r.err, "volume import exits 0 and says verified", r.err)
    c.ok("progress" not in r.err and "\r" not in r.err, "no terminal progress bar when stderr is not a tty", r.err)
    c.ok(allocated(backing) < 8 * MiB, "the import left the image's holes as holes in the volume's file",
         allocated(backing))
    lease = ctl.json("volume", "show", "img")["status"].get("lease")
    if lease is not None:  # a blockd with leases: the copy must not leave one behind
        c.eq(lease.get("state"), "free", "after the import blockctl's lease is released")
    settle()  # blockctl used the Unix socket; qemu-img comes over TCP
    r = fx.run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", qcow2, b.uri("img")], check=False)
    c.eq(r.returncode, 0, "qemu-img compare: the qcow2 and the volume have the same content")

    out = os.path.join(work, "out.raw")
    settle()
    r = ctl("volume", "export", "img", out)
    c.ok(r.returncode == 0 and "verified" in r.err, "volume export exits 0 and says verified", r.err)
    c.eq(sha256(out), sha256(raw), "the exported image is byte-identical to the imported one")
    c.ok(allocated(out) < 8 * MiB, "the exported image is sparse", allocated(out))

    with open(os.path.join(work, "piped.raw"), "wb") as f:
        p = subprocess.Popen([blockctl_bin(), "--server", ctl.server, "-q", "volume", "export", "img", "-"],
                             stdout=subprocess.PIPE)
        h = hashlib.sha256()
        for block in iter(lambda: p.stdout.read(MiB), b""):
            h.update(block)
        rc = p.wait(60)
    c.ok(rc == 0 and h.hexdigest() == sha256(raw), "volume export to a pipe streams every byte, zeroes included")

    # Old data everywhere, then an import from stdin must leave exactly the image.
    r = ctl("volume", "create", "piped", "--size", str(IMAGE_SIZE))
    fx.run(["nbdsh", "-u", b.uri("piped"), "-c",
            f"[h.pwrite(b'\\xee' * {16 * MiB}, i * {16 * MiB}) for i in range({IMAGE_SIZE // (16 * MiB)})]; h.flush()"])
    settle()
    with open(raw, "rb") as f:
        r = ctl("-q", "volume", "import", "piped", "-", stdin=f)
    c.eq(r.returncode, 0, "volume import from stdin over old data exits 0")
    settle()
    r = fx.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", raw, b.uri("piped")], check=False)
    c.eq(r.returncode, 0, "after a stdin import over old data the volume equals the image (holes were zeroed)")

    r = ctl("volume", "create", "small", "--size", "1MiB")
    before = fx.run(["nbdsh", "-u", b.uri("small"), "-c", "import hashlib; "
                     "print(hashlib.sha256(h.pread(1048576, 0)).hexdigest())"]).stdout
    settle()
    r = ctl("volume", "import", "small", raw)
    c.ok(r.returncode == 1 and "larger than volume" in r.err and str(IMAGE_SIZE) in r.err and "1048576" in r.err,
         "an image larger than the volume is refused with both sizes, exit 1", r.err)
    settle()
    after = fx.run(["nbdsh", "-u", b.uri("small"), "-c", "import hashlib; "
                    "print(hashlib.sha256(h.pread(1048576, 0)).hexdigest())"]).stdout
    c.eq(after, before, "the refused import wrote nothing")

    settle()
    r = ctl("volume", "delete", "img")
    c.ok(r.returncode == 0 and 'volume "img" deleted' in r.out, "volume delete exits 0", r.out)
    c.ok(not os.path.exists(backing), "volume delete removed the volume's file", backing)
    r = fx.run(["nbdinfo", "--size", b.uri("img")], check=False)
    c.ok(r.returncode != 0, "a deleted volume is no longer served over NBD")


def expect(c, r, code, words, what):
    text = r.err + r.out
    c.ok(r.returncode == code and all(w in text for w in words) and text.startswith("blockctl: "),
         f"{what}: exit {code}, message has {words}", f"exit {r.returncode}: {text.strip()}")


def check_bad_inputs(c, ctl, b):
    before = snapshot(ctl, b.state_dir)
    expect(c, ctl("volume", "create", "bad", "--size", "10QB"), 2, ["bad size", "10QB", "10GiB"], "bad size")
    expect(c, ctl("volume", "create", "bad", "--size", "0"), 2, ["cannot be empty"], "zero size")
    expect(c, ctl("volume", "create", "Bad_Name", "--size", "1G"), 2, ["bad volume name", "Bad_Name"], "bad name")
    expect(c, ctl("volume", "create", "x", "--size", "1G", "--label", "novalue"), 2, ["KEY=VALUE"], "bad label")
    expect(c, ctl("volume", "create", "x", "--size", "1G", "--access-modes", "ReadWriteMany"), 2,
           ["unknown access mode"], "bad access mode")
    expect(c, ctl("volume", "create", "x"), 2, ["--size"], "missing --size")
    expect(c, ctl("volume", "frobnicate"), 2, ["--help"], "unknown command")
    expect(c, ctl("volume", "show", "nope"), 1, ["nope", "(not_found)"], "unknown volume: show")
    expect(c, ctl("volume", "delete", "nope"), 1, ["nope", "(not_found)"], "unknown volume: delete")
    expect(c, ctl("volume", "resize", "nope", "--size", "1G"), 1, ["nope", "(not_found)"], "unknown volume: resize")
    expect(c, ctl("volume", "import", "nope", "/dev/null"), 1, ["nope", "(not_found)"], "unknown volume: import")
    expect(c, ctl("volume", "resize", "disk", "--size", "32MiB"), 1, ["(failed_precondition)"], "shrink")
    expect(c, ctl("volume", "create", "x", "--size", "1G", "--class", "gold"), 1, ["gold"], "unknown class")
    expect(c, ctl("volume", "create", "disk", "--size", "1G"), 1, ["(already_exists)"], "name taken")
    expect(c, ctl("--server", "unix:///nonexistent/blockd.sock", "status", server=False), 1,
           ["cannot reach blockd at unix:///nonexistent/blockd.sock", "is blockd running", "BLOCKD_SERVER"],
           "unreachable server")
    expect(c, ctl("--server", "ftp://x", "status"), 2, ["not a server address"], "bad --server")

    h = nbd.NBD()
    h.connect_uri(b.uri("disk"))
    try:
        r = ctl("volume", "delete", "disk")
        expect(c, r, 1, ["(failed_precondition)", "disk"], "delete while an NBD client is connected")
        # The reason is the connection, or (with leases) the lease that connection holds.
        c.ok("connected" in r.err or "leased" in r.err, "the refusal says why", r.err)
        if ctl.json("volume", "show", "disk")["status"].get("lease") is not None:
            r = ctl("volume", "import", "disk", "/dev/null")
            expect(c, r, 1, ["NBD_REP_ERR_POLICY", "held for writing"],
                   "import while another writer holds the volume is refused with the server's reason")
        c.eq(snapshot(ctl, b.state_dir), before, "no rejected command changed the catalog or the files")
        c.ok(h.pread(512, 64 * MiB - 512) == b"end!" * 128, "the connected client still reads its data")
    finally:
        h.shutdown()


def lease_row(ctl, volume):
    """The `lease list` table row(s) of `volume`, as dicts keyed by the header."""
    r = ctl("lease", "list")
    lines = r.out.splitlines()
    if r.returncode != 0 or not lines:
        return r, []
    header = lines[0].split()
    rows = []
    for line in lines[1:]:
        cells = line.split()
        if cells and cells[0] == volume:
            # EXPIRES may be two words ("in 4m59s"): everything after HELD.
            row = dict(zip(header[:-1], cells[:len(header) - 1]))
            row["EXPIRES"] = " ".join(cells[len(header) - 1:])
            rows.append(row)
    return r, rows


def expires_in(lease, holder):
    """Seconds until `holder`'s lease expires, from the API's expiresAt (None if unset)."""
    for h in lease["holders"]:
        if h["holder"] == holder and h.get("expiresAt"):
            t = time.strptime(h["expiresAt"].split(".")[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S")
            return calendar.timegm(t) - time.time()
    return None


def connect_as(b, export):
    """A libnbd handle connected to blockd `b` with this export name (volume?holder=H)."""
    h = nbd.NBD()
    h.set_export_name(export)
    h.connect_tcp("127.0.0.1", str(b.port))
    return h


def check_leases(c, ctl, b):
    """blockctl lease ..., judged by libnbd clients and the API's JSON."""
    r = ctl("volume", "create", "held", "--size", "16MiB")
    c.require(r.returncode == 0, "create a volume for the lease scenario", r.err)
    a = connect_as(b, "held?holder=node-a")
    a.pwrite(b"A" * 65536, 0)
    a.flush()

    lease = ctl.json("lease", "show", "held")
    gen = int(lease["generation"])
    c.ok(lease["state"] == "write" and [(h["holder"], h["mode"], h["connections"]) for h in lease["holders"]] ==
         [("node-a", "rw", 1)] and "expiresAt" not in lease["holders"][0],
         "-o json lease show is the API's Lease: node-a, rw, 1 connection, no expiry while connected", lease)
    r, rows = lease_row(ctl, "held")
    c.ok(r.returncode == 0 and r.out.split("\n")[0].split() ==
         ["VOLUME", "STATE", "HOLDER", "MODE", "GENERATION", "CONNECTIONS", "HELD", "EXPIRES"],
         "lease list prints a table with its header", r.out)
    c.ok(len(rows) == 1 and rows[0]["STATE"] == "write" and rows[0]["HOLDER"] == "node-a" and
         rows[0]["MODE"] == "rw" and rows[0]["GENERATION"] == str(gen) and rows[0]["CONNECTIONS"] == "1" and
         rows[0]["EXPIRES"] == "connected", "lease list shows node-a with 1 connection and the generation", rows)
    r = ctl("lease", "show", "held")
    c.ok(r.returncode == 0 and "node-a" in r.out and f" {gen} " in r.out and "connected" in r.out,
         "lease show prints the lease as a table", r.out)
    r = ctl("volume", "list")
    header = r.out.splitlines()[0] if r.out else ""
    held = [ln for ln in r.out.splitlines() if ln.startswith("held ")]
    at = header.find("HOLDER")  # a left-aligned column starts under its header ("16 MiB" is two words)
    c.ok(at > 0 and held and held[0][at:].split()[0] == "node-a", "volume list has a HOLDER column naming node-a",
         r.out)
    c.ok("held" in ctl("-o", "name", "lease", "list").out.split(), "-o name lease list prints volume names")

    r = ctl("lease", "break", "held", "--to", "node-b", "--ttl", "2m")
    c.ok(r.returncode == 0 and f"generation {gen} \u2192 {gen + 1}" in r.out and '"node-a"' in r.out and
         "1 connection closed" in r.out and 'held by "node-b"' in r.out,
         "lease break --to node-b --ttl 2m exits 0 and says: generation +1, node-a fenced, 1 connection closed, "
         "node-b holds it", r.out + r.err)
    try:
        a.pwrite(b"L" * 4096, 0)
        late = "accepted"
    except nbd.Error as e:
        late = f"refused: {e}"
    c.ok(late != "accepted", "node-a's next write after the break fails", late)
    try:
        a.shutdown()
    except nbd.Error:
        pass
    lease = ctl.json("lease", "show", "held")
    c.ok(int(lease["generation"]) == gen + 1 and [h["holder"] for h in lease["holders"]] == ["node-b"],
         "after the break node-b holds the lease at generation + 1", lease)
    nb = connect_as(b, "held?holder=node-b")
    c.ok(nb.pread(65536, 0) == b"A" * 65536, "node-b reads what node-a had flushed, not its late write")
    nb.shutdown()
    try:
        nagain = connect_as(b, "held?holder=node-a")
        readmitted = True
        nagain.shutdown()
    except nbd.Error:
        readmitted = False
    c.ok(not readmitted, "node-a is refused after the break")

    r = ctl("lease", "release", "held", "--holder", "node-b")
    c.ok(r.returncode == 0 and "free" in r.out, "lease release frees the volume", r.out + r.err)
    c.eq(ctl.json("lease", "show", "held")["state"], "free", "the API agrees the lease is free")
    r = ctl("lease", "acquire", "held", "--holder", "node-a", "--ttl", "5m")
    c.ok(r.returncode == 0 and "acquired" in r.out and '"node-a"' in r.out and
         re.search(r"expires in (5m|4m5\ds) unless it connects", r.out),
         "lease acquire --ttl 5m exits 0 and says when it expires", r.out + r.err)
    left = expires_in(ctl.json("lease", "show", "held"), "node-a")
    c.ok(left is not None and 280 < left <= 301, "--ttl 5m is sent: the API's expiresAt is 5 minutes away", left)
    r, rows = lease_row(ctl, "held")
    c.ok(len(rows) == 1 and rows[0]["HOLDER"] == "node-a" and rows[0]["CONNECTIONS"] == "0" and
         re.fullmatch(r"in (5m|4m\d+s)", rows[0]["EXPIRES"]),
         "lease list shows when a lease without connections expires", rows)
    na = connect_as(b, "held?holder=node-a")
    c.ok(na.pread(4096, 0) == b"A" * 4096, "after lease acquire node-a is admitted again")
    na.shutdown()
    r = ctl("lease", "renew", "held", "--holder", "node-a", "--ttl", "1h")
    c.ok(r.returncode == 0 and "renewed" in r.out, "lease renew --ttl 1h exits 0", r.out + r.err)
    left = expires_in(ctl.json("lease", "show", "held"), "node-a")
    c.ok(left is not None and 3500 < left <= 3601, "--ttl 1h is sent: the API's expiresAt is an hour away", left)
    r = ctl("-o", "json", "lease", "renew", "held", "--holder", "node-a", "--ttl", "90")
    left = expires_in(json.loads(r.out), "node-a") if r.returncode == 0 else None
    c.ok(left is not None and 60 < left <= 91, "--ttl 90 is plain seconds; -o json prints the API's Lease", r.out)

    expect(c, ctl("lease", "show", "nope"), 1, ["nope", "(not_found)"], "lease show of an unknown volume")
    expect(c, ctl("lease", "acquire", "nope", "--holder", "node-a"), 1, ["nope", "(not_found)"],
           "lease acquire of an unknown volume")
    expect(c, ctl("lease", "break", "nope"), 1, ["nope", "(not_found)"], "lease break of an unknown volume")
    expect(c, ctl("lease", "acquire", "held", "--holder", "a b"), 2, ["bad holder", "a b", "A-Z a-z 0-9"],
           "bad holder")
    expect(c, ctl("lease", "break", "held", "--to", "node%2Db"), 2, ["bad holder"], "bad --to holder")
    expect(c, ctl("lease", "acquire", "held", "--holder", "node-a", "--ttl", "5x"), 2, ["bad duration", "5x"],
           "bad --ttl")
    expect(c, ctl("lease", "renew", "held", "--holder", "node-a", "--ttl", "0"), 2, ["bad duration", "positive"],
           "zero --ttl")
    expect(c, ctl("lease", "acquire", "held", "--holder", "node-a", "--mode", "rx"), 2, ["--mode"], "bad --mode")
    expect(c, ctl("lease", "acquire", "held", "--holder", "node-c"), 1, ["held for writing", "node-a",
                                                                       "(failed_precondition)"],
           "acquire while another holder has it: the server's reason")
    expect(c, ctl("lease", "renew", "held", "--holder", "node-z"), 1, ["(not_found)"],
           "renew a lease one does not hold")
    c.eq(ctl.json("lease", "show", "held")["holders"][0]["holder"], "node-a", "the refused commands changed nothing")
    r = ctl("lease", "release", "held", "--holder", "node-a")
    c.ok(r.returncode == 0 and ctl.json("lease", "show", "held")["state"] == "free", "release at the end", r.out)
    r = ctl("lease", "acquire", "held")
    host = socket.gethostname()
    c.ok(r.returncode == 0 and ctl.json("lease", "show", "held")["holders"][0]["holder"] == host,
         "--holder defaults to the host name", r.out + r.err)
    r = ctl("lease", "release", "held")
    c.ok(r.returncode == 0 and ctl.json("lease", "show", "held")["state"] == "free",
         "release with the default holder", r.out + r.err)


STATUS_COLUMNS = ["NAME", "SIZE", "HOLDER(S)", "CONNECTIONS", "READ/s", "WRITE/s", "READ MB/s", "WRITE MB/s", "ERRORS"]


def status_row(c, out, volume):
    """The volume's row of `blockctl status` as {column: text}; columns are 2+ spaces apart."""
    lines = out.splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("NAME ")]
    c.require(len(header) == 1 and re.split(r"\s{2,}", lines[header[0]].strip()) == STATUS_COLUMNS,
              "status prints the volume table with its columns", out)
    for line in lines[header[0] + 1:]:
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] == volume:
            c.require(len(cells) == len(STATUS_COLUMNS), f"status row of {volume} has every column", line)
            return dict(zip(STATUS_COLUMNS, cells))
    raise fx.TestFailure(f"no status row for {volume}:\n{out}")


def json_volume(status, name):
    return [v for v in status["volumes"] if v["name"] == name][0]


def check_status_rates(c, ctl, b):
    """blockctl status: holders, connections and rates since the last call, around libnbd writes."""
    state_file = os.path.join(STATE_DIR, f"blockctl-status-{os.getuid()}.json")
    r = ctl("volume", "create", "rates", "--size", "16MiB")
    c.require(r.returncode == 0, "create a volume for the status scenario", r.err)
    if os.path.exists(state_file):
        os.unlink(state_file)
    r = ctl("status")
    row = status_row(c, r.out, "rates")
    c.ok(r.returncode == 0 and r.out.count("rates from the next call on") == 1 and "first call" in r.out and
         row["HOLDER(S)"] == "-" and row["CONNECTIONS"] == "0" and row["WRITE/s"] == "-" and row["ERRORS"] == "-",
         "first status: no holder, 0 connections, rates '-' and 'rates from the next call on' once", r.out + r.err)
    c.ok(os.path.isfile(state_file) and "rates" in json.load(open(state_file))["servers"][ctl.server]["volumes"],
         "the sample is kept in BLOCKCTL_STATE_DIR, per server address", state_file)

    h = connect_as(b, "rates?holder=node-r")
    try:
        for i in range(100):
            h.pwrite(b"\xab" * 4096, i * 4096)
        time.sleep(0.1)
        r = ctl("status")
        row = status_row(c, r.out, "rates")
        c.ok(r.returncode == 0 and row["HOLDER(S)"] == "node-r" and row["CONNECTIONS"] == "1" and
             float(row["WRITE/s"]) > 0 and float(row["WRITE MB/s"]) > 0 and float(row["READ/s"]) == 0 and
             row["ERRORS"] == "0" and "since the last call" in r.out and "next call" not in r.out,
             "second status after 100 writes of 4 KiB: holder node-r, 1 connection, a nonzero WRITE/s", r.out)

        s = ctl.json("status")
        v = json_volume(s, "rates")
        rates = v.get("rates") or {}
        c.ok(rates.get("writesPerSecond") == 0 and rates.get("writeBytesPerSecond") == 0 and
             rates.get("intervalSeconds", 0) > 0 and v["status"]["lease"]["holders"][0]["holder"] == "node-r" and
             v["status"]["connections"] == 1,
             "third status (-o json) with no I/O: write rate 0, the API's status JSON plus rates", json.dumps(v))

        for i in range(50):
            h.pwrite(b"\xcd" * 4096, i * 4096)
        h.pread(8192, 0)
        rates = json_volume(ctl.json("status"), "rates")["rates"]
        t = rates["intervalSeconds"]
        c.ok(abs(rates["writesPerSecond"] * t - 50) < 1e-6 and abs(rates["writeBytesPerSecond"] * t - 50 * 4096) < 1e-3
             and abs(rates["readsPerSecond"] * t - 1) < 1e-6 and abs(rates["readBytesPerSecond"] * t - 8192) < 1e-3
             and rates["errors"] == 0,
             "rate x interval is exactly the workload: 50 writes, 200 KiB, 1 read of 8 KiB", json.dumps(rates))
    finally:
        h.shutdown()

    with open(state_file, "w") as f:
        f.write("{not json")
    r = ctl("status")
    c.ok(r.returncode == 0 and "rates from the next call on" in r.out and status_row(c, r.out, "rates")["WRITE/s"] == "-",
         "an unreadable state file is ignored", r.out + r.err)
    c.ok(ctl.server in json.load(open(state_file))["servers"], "and replaced by a good one (atomically)")
    c.eq([n for n in os.listdir(STATE_DIR) if n != os.path.basename(state_file)], [], "no temp files left behind")
    settle()
    c.eq(ctl("volume", "delete", "rates").returncode, 0, "delete the status scenario's volume")


def check_help_and_completion(c, ctl):
    for cmd in ([], ["volume"], ["volume", "create"], ["volume", "list"], ["volume", "show"],
                ["volume", "resize"], ["volume", "delete"], ["volume", "import"], ["volume", "export"],
                ["class"], ["class", "list"], ["status"], ["lease"], ["lease", "list"], ["lease", "show"],
                ["lease", "acquire"], ["lease", "renew"], ["lease", "release"], ["lease", "break"]):
        r = ctl(*cmd, "--help")
        c.ok(r.returncode == 0 and "Usage:" in r.out, f"blockctl {' '.join(cmd)} --help exits 0 with usage")
    completion = os.path.join(fx.REPO, "tools", "blockctl.bash-completion")
    script = (f"source {completion}; COMP_WORDS=({blockctl_bin()} volume show ''); COMP_CWORD=3; _blockctl; "
              "echo \"${COMPREPLY[*]}\"")
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, BLOCKD_SERVER=ctl.server))
    c.ok(r.returncode == 0 and "disk" in r.stdout.split(), "bash completion offers volume names from the server",
         r.stdout + r.stderr)
    r = ctl("lease", "acquire", "--help")
    c.ok("host" in r.out and "--ttl" in r.out and "30s" in r.out, "lease acquire --help says --holder defaults to "
         "the host name and how to write --ttl", r.out)
    for words, cword, want in ((["lease", "''"], 2, {"list", "show", "acquire", "renew", "release", "break"}),
                               (["lease", "break", "''"], 3, {"disk"}),
                               (["lease", "acquire", "disk", "--mode", "''"], 5, {"rw", "ro"}),
                               (["lease", "acquire", "disk", "--"], 4, {"--holder", "--mode", "--ttl"}),
                               (["lease", "break", "disk", "--"], 4, {"--to", "--ttl"}),
                               (["''"], 1, {"lease", "volume"})):
        script = (f"source {completion}; COMP_WORDS=({blockctl_bin()} {' '.join(words)}); COMP_CWORD={cword}; "
                  "_blockctl; echo \"${COMPREPLY[*]}\"")
        r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, BLOCKD_SERVER=ctl.server))
        c.ok(r.returncode == 0 and want <= set(r.stdout.split()), f"bash completion of 'blockctl {' '.join(words)}' "
             f"offers {sorted(want)}", r.stdout + r.stderr)


def check_peer_server(c, work, raw):
    """The NBD client is not tied to blockd: the same import/export against qemu-nbd."""
    target = os.path.join(work, "peer.img")
    with open(target, "wb") as f:
        f.truncate(IMAGE_SIZE)
    sock = os.path.join(work, "qemu-nbd.sock")
    proc = subprocess.Popen(["qemu-nbd", "-f", "raw", "-k", sock, "-x", "peer", "-t", target],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    fx.on_timeout(lambda: proc.kill())
    try:
        for _ in range(100):
            if os.path.exists(sock) or proc.poll() is not None:
                break
            time.sleep(0.05)
        c.require(proc.poll() is None and os.path.exists(sock), "qemu-nbd started")
        uri = f"nbd+unix:///peer?socket={sock}"
        ctl = Blockctl("/nonexistent")  # --nbd needs no control API
        r = ctl("volume", "import", "peer", raw, "--nbd", uri)
        c.ok(r.returncode == 0 and "verified" in r.err, "import with --nbd into qemu-nbd", r.err)
        c.ok(allocated(target) < 8 * MiB, "qemu-nbd's file stayed sparse (holes were not written)", allocated(target))
        out = os.path.join(work, "peer-out.raw")
        r = ctl("volume", "export", "peer", out, "--nbd", uri)
        c.ok(r.returncode == 0 and "verified" in r.err, "export with --nbd from qemu-nbd", r.err)
        c.ok(sha256(out) == sha256(raw) == sha256(target), "qemu-nbd round trip is byte-identical")
        r = ctl("volume", "import", "peer", raw, "--nbd", "nbd+unix:///nope?socket=" + sock)
        c.ok(r.returncode == 1 and "nope" in r.err and "NBD_REP_ERR" in r.err,
             "an export qemu-nbd does not have: exit 1 with the server's refusal", r.err)
    finally:
        proc.terminate()
        proc.wait(10)


def body(c):
    fx.require_tools("nbdinfo", "nbdsh", "qemu-img", "qemu-io", "qemu-nbd", "bash")
    if not os.access(blockctl_bin(), os.X_OK):
        raise fx.TestFailure(f"blockctl not found at {blockctl_bin()} (build it, or set BLOCKCTL_BIN)")
    tmp = fx.temp_dir("blockctl-test-")
    try:
        run_all(c, tmp.name)
    finally:
        for b in fx._started:  # the images are large: stop blockd and remove them now
            b.kill()
        shutil.rmtree(tmp.name, ignore_errors=True)


def run_all(c, work):
    global STATE_DIR
    STATE_DIR = os.path.join(work, "blockctl-state")
    os.mkdir(STATE_DIR)
    state = os.path.join(work, "state")
    os.mkdir(state)
    b = fx.Blockd(state_dir=state, extra=blockd_extra()).start()
    ctl = Blockctl(b.control_socket)
    written = check_lifecycle(c, ctl, b)
    b2, ctl2 = check_restart(c, ctl, b, written)
    check_images(c, ctl2, b2, work)
    check_peer_server(c, work, os.path.join(work, "src.raw"))
    check_bad_inputs(c, ctl2, b2)
    check_leases(c, ctl2, b2)
    check_status_rates(c, ctl2, b2)
    check_help_and_completion(c, ctl2)
    settle()
    r = ctl2("volume", "delete", "disk")
    c.eq(r.returncode, 0, "delete works once the client has gone")
    c.eq(b2.stop(), 0, "blockd stops cleanly at the end")


if __name__ == "__main__":
    fx.test_main(body, timeout=280)
