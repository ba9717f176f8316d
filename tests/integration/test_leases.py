#!/usr/bin/env python3
"""Leases (DESIGN.md §4) judged by real clients: libnbd (nbdsh's library), nbdinfo,
nbdcopy and fio, against a real blockd.

  * a second holder's connect fails with the policy error, and the server's message
    (which libnbd logs) names the current holder; the holder's own 4 connections all
    work at once (multi-conn), and so does fio over 4 connections;
  * read-only sharing: two readers at once on a ReadOnlyMany volume, advertised
    read-only, their writes refused with EPERM; a writer is refused while they read, and
    a reader is refused while a writer holds it; a ReadWriteOnce-only volume refuses
    mode=ro and says what the policy is;
  * grace: after the holder disconnects, another holder is refused during the grace
    period and admitted after it; the holder itself comes back within it;
  * restart: after blockd restarts, the previous holder reconnects during the grace and
    another holder is refused, with a message saying so;
  * break through the API: the old holder's next write fails, the new holder reads
    exactly what the old one had flushed; the old holder is not re-admitted until it
    acquires again; the generation only goes up, across restarts too;
  * the export-name grammar: a bad name gets a message that states the grammar;
  * delete and resize of a leased volume are refused with the reason.
"""
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

fx.use_system_python()
import nbd  # noqa: E402

MiB = 1 << 20
GRACE = 1.5


class Api:
    def __init__(self, sock):
        self.sock = sock

    def call(self, method, path, body=None):
        cmd = ["curl", "-sS", "--max-time", "90", "--unix-socket", self.sock, "-X", method,
               "-o", "-", "-w", "\n%{http_code}", "http://localhost" + path]
        if body is not None:
            cmd += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        text, _, code = r.stdout.rpartition("\n")
        return int(code), (json.loads(text) if text.strip() else None)


def connect(b, export, messages=None):
    """A libnbd handle on `export` (the raw export name, grammar included)."""
    h = nbd.NBD()
    if messages is not None:
        h.set_debug(True)
        h.set_debug_callback(lambda context, message: messages.append(message))
    h.set_export_name(export)
    h.connect_tcp("127.0.0.1", str(b.port))
    if messages is not None:
        h.set_debug(False)
    return h


def refusal(b, export):
    """The server's message when `export` is refused at GO, or None if admitted."""
    messages = []
    try:
        h = connect(b, export, messages)
    except nbd.Error:
        found = [m for m in messages if "server error message" in m]
        return found[0].split("server error message:", 1)[1].strip() if found else "refused (no message)"
    h.shutdown()
    return None


def generation(api, volume):
    code, lease = api.call("GET", f"/v1/volumes/{volume}/lease")
    return int(lease["generation"])


def wait_admitted(b, export, seconds):
    wait = fx.deadline(seconds)
    while wait():
        if refusal(b, export) is None:
            return True
        time.sleep(0.1)
    return False


def body(c):
    fx.require_tools("curl", "nbdinfo", "fio")
    state = fx.temp_dir("blockd-leases-")
    b = fx.Blockd(state_dir=state.name, extra=["--lease-grace", str(GRACE)]).start()
    api = Api(b.control_socket)
    api.call("POST", "/v1/volumes", {"name": "db", "size": "16MiB"})
    api.call("POST", "/v1/volumes", {"name": "shared", "size": "4MiB",
                                     "accessModes": ["READ_WRITE_ONCE", "READ_ONLY_MANY"]})

    # --- one writer, its multi-conn, a second holder refused
    a = [connect(b, "db?holder=node-a") for _ in range(4)]
    base = 12 * MiB  # past the 8 MiB that fio writes below
    for i, h in enumerate(a):
        h.pwrite(bytes([65 + i]) * 4096, base + i * 4096)
    c.ok(all(a[0].pread(4096, base + i * 4096) == bytes([65 + i]) * 4096 for i in range(4)),
         "the holder's 4 connections all write, and see each other's writes")
    code, lease = api.call("GET", "/v1/volumes/db/lease")
    c.ok(lease["state"] == "write" and lease["holders"][0]["holder"] == "node-a" and
         lease["holders"][0]["connections"] == 4, "the lease shows one holder with 4 connections", lease)
    why = refusal(b, "db?holder=node-b")
    c.ok(why is not None and '"node-a"' in why and "held for writing" in why and "blockctl lease break db" in why,
         "a second holder is refused at GO with a message naming the holder", why)
    r = subprocess.run(["nbdinfo", f"nbd://127.0.0.1:{b.port}/db%3Fholder=node-b"], capture_output=True, text=True,
                       timeout=30)
    c.ok(r.returncode != 0, "nbdinfo as a second holder is refused too (INFO answers as GO)", r.stdout[-200:])
    a[0].flush()

    # fio over 4 connections of the same holder (kernel-style multi-conn)
    r = subprocess.run(["fio", "--name=mc", "--ioengine=nbd", f"--uri=nbd://127.0.0.1:{b.port}/db%3Fholder=node-a",
                        "--rw=randwrite", "--bs=4k", "--size=8m", "--numjobs=4", "--iodepth=4", "--runtime=2",
                        "--time_based", "--group_reporting", "--output-format=json"],
                       capture_output=True, text=True, timeout=120)
    c.ok(r.returncode == 0, "fio with 4 connections of the holder runs", r.stderr[-300:])

    # --- grammar and access modes
    why = refusal(b, "db?holder=bad holder")
    c.ok(why is not None and "holder=" in why and "mode=rw|ro" in why, "a bad export name states the grammar", why)
    why = refusal(b, "db?mode=ro&holder=node-r")
    c.ok(why is not None and "ReadOnlyMany" in why, "mode=ro on a ReadWriteOnce-only volume says the policy", why)

    # --- read-only sharing
    r1 = connect(b, "shared?holder=reader-1&mode=ro")
    r2 = connect(b, "shared?holder=reader-2&mode=ro")
    c.ok(r1.is_read_only() and r2.is_read_only(), "two readers share the volume, advertised read-only")
    try:
        r1.pwrite(b"x" * 512, 0)
        wrote = "accepted"
    except nbd.Error as e:
        wrote = e.errno
    c.ok(wrote != "accepted", "a reader's write is refused", wrote)
    why = refusal(b, "shared?holder=writer-1")
    c.ok(why is not None and "read-only" in why and "reader-1" in why, "a writer is refused while readers share it",
         why)
    r1.shutdown()
    r2.shutdown()
    c.ok(wait_admitted(b, "shared?holder=writer-1", GRACE * 4), "the writer is admitted once the readers' leases end")
    w = connect(b, "shared?holder=writer-1")
    why = refusal(b, "shared?holder=reader-3&mode=ro")
    c.ok(why is not None and "writer-1" in why, "a reader is refused while a writer holds it", why)
    w.shutdown()

    # --- grace after the last connection
    for h in a:
        h.shutdown()
    why = refusal(b, "db?holder=node-b")
    c.ok(why is not None and "node-a" in why and "reconnect" in why,
         "during the grace period another holder is refused, and told why", why)
    h = connect(b, "db?holder=node-a")
    c.ok(h.pread(4096, base) == b"A" * 4096, "the holder itself comes back within the grace period")
    h.shutdown()
    time.sleep(GRACE + 0.5)
    c.ok(refusal(b, "db?holder=node-b") is None, "after the grace period another holder is admitted")

    # --- restart: the last writer (node-b now) keeps the volume for the grace period
    gen_before = generation(api, "db")
    h = connect(b, "db?holder=node-b")
    h.pwrite(b"B" * 4096, 0)
    h.flush()
    h.shutdown()
    c.eq(b.stop(), 0, "blockd stops cleanly")
    b = fx.Blockd(state_dir=state.name, extra=["--lease-grace", str(GRACE * 2)]).start()
    api = Api(b.control_socket)
    why = refusal(b, "db?holder=node-c")
    c.ok(why is not None and "node-b" in why and "restarted" in why,
         "after a restart another holder is refused during the grace, with the reason", why)
    h = connect(b, "db?holder=node-b")
    c.ok(h.pread(4096, 0) == b"B" * 4096, "after a restart the previous holder reconnects during the grace")
    c.ok(generation(api, "db") >= gen_before, "the generation does not go back across a restart")

    # --- delete and resize of a leased volume
    code, got = api.call("DELETE", "/v1/volumes/db")
    c.ok(code == 409 and "node-b" in got["message"], "delete of a leased volume is refused naming the holder", got)
    code, got = api.call("POST", "/v1/volumes/db/resize", {"size": "32MiB"})
    c.ok(code == 409 and "node-b" in got["message"], "resize of a leased volume is refused naming the holder", got)

    # --- break: fence node-b, hand the volume to node-c
    h.pwrite(b"F" * 4096, 8192)
    h.flush()
    gen = generation(api, "db")
    code, broke = api.call("POST", "/v1/volumes/db/lease/break", {"toHolder": "node-c"})
    c.ok(code == 200 and broke["fencedHolders"] == ["node-b"] and int(broke["lease"]["generation"]) == gen + 1 and
         broke["lease"]["holders"][0]["holder"] == "node-c",
         "break answers once done: node-b fenced, node-c holds generation + 1", broke)
    try:
        h.pwrite(b"L" * 4096, 8192)
        late = "accepted"
    except nbd.Error as e:
        late = e.errno or str(e)
    c.ok(late != "accepted", "the old holder's next write fails", late)
    nc = connect(b, "db?holder=node-c")
    c.ok(nc.pread(4096, 8192) == b"F" * 4096, "the new holder reads exactly what the old one had flushed")
    nc.shutdown()
    why = refusal(b, "db?holder=node-b")
    c.ok(why is not None and "broken" in why and "blockctl lease acquire" in why,
         "the broken holder is not re-admitted automatically", why)
    time.sleep(GRACE * 2 + 0.5)
    code, got = api.call("POST", "/v1/volumes/db/lease/acquire", {"holder": "node-b"})
    c.ok(code == 200 and got["holders"][0]["holder"] == "node-b", "the broken holder may acquire it again explicitly",
         got)
    code, got = api.call("POST", "/v1/volumes/db/lease/release", {"holder": "node-b"})
    c.ok(code == 200 and got["state"] == "free", "release frees the volume", got)
    code, got = api.call("POST", "/v1/volumes/db/lease/acquire", {"holder": "no spaces"})
    c.ok(code == 400 and got["code"] == "invalid_argument", "a bad holder is a 400", got)
    code, got = api.call("POST", "/v1/volumes/nope/lease/break")
    c.eq(code, 404, "a break on an unknown volume is a 404")
    code, listing = api.call("GET", "/v1/leases")
    c.ok(code == 200 and {l["volume"] for l in listing["leases"]} == {"db", "shared"}, "/v1/leases lists every volume",
         listing)
    b.stop()


if __name__ == "__main__":
    fx.test_main(body, timeout=240)
