#!/usr/bin/env python3
"""The control API, driven with raw `curl --unix-socket` requests, judged by nbdinfo and
libnbd on the data plane and by what is on disk.

  * create / list (label and class filters) / show / resize / delete, each answer's
    status and JSON; the volume appears on NBD with its size and leaves it on delete;
  * every bad input (malformed JSON, unknown field, wrong type, oversized body, bad
    name, size, label, class, shrink, unknown route and method, bad query, garbage
    HTTP) gets a 4xx with {code, message}, and changes neither the catalog nor the
    files;
  * delete is refused while a client is connected, and works once it leaves;
  * resize and delete are refused while a client holds the volume's lease, naming the
    holder; once the lease has ended, a resize is seen by new connections;
  * volumes created, resized and deleted while fio verifies I/O on another volume:
    fio sees no error;
  * storage classes from a config file: sparse and preallocate (the file's blocks are
    reserved), list them;
  * a restart keeps the catalog and the data.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

fx.use_system_python()
import nbd  # noqa: E402

MiB = 1 << 20
GRACE = ["--lease-grace", "0.2"]


class Api:
    """curl --unix-socket against one blockd's control socket."""

    def __init__(self, sock):
        self.sock = sock

    def call(self, method, path, body=None, headers=()):
        cmd = ["curl", "-sS", "--max-time", "30", "--unix-socket", self.sock, "-X", method,
               "-o", "-", "-w", "\n%{http_code}"]
        for h in headers:
            cmd += ["-H", h]
        data = None
        if body is not None:
            cmd += ["--data-binary", "@-"]
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            if isinstance(data, str):
                data = data.encode()
        cmd.append("http://localhost" + path)
        r = subprocess.run(cmd, input=data, capture_output=True, timeout=60)
        if r.returncode != 0:
            raise fx.TestFailure(f"curl failed ({r.returncode}): {r.stderr.decode()}")
        out = r.stdout.decode()
        text, _, code = out.rpartition("\n")
        try:
            parsed = json.loads(text) if text.strip() else None
        except ValueError:
            parsed = text
        return int(code), parsed

    def volumes(self):
        code, body = self.call("GET", "/v1/volumes")
        if code != 200:
            raise fx.TestFailure(f"list failed: {code} {body}")
        return body["volumes"]


def snapshot(api, state_dir):
    """What a rejected request must not change: the listing and the files."""
    files = sorted(os.listdir(os.path.join(state_dir, "volumes")))
    listing = [(v["name"], v["sizeBytes"], v["uuid"], v.get("labels", {})) for v in api.volumes()]
    return listing, files


def nbd_size(b, name):
    h = nbd.NBD()
    h.connect_uri(b.uri(name))
    try:
        return h.get_size()
    finally:
        h.shutdown()


def check_bad_inputs(c, api, b):
    before = snapshot(api, b.state_dir)
    big = json.dumps({"name": "big", "size": "1MiB", "description": "x" * (100 * 1024)})
    cases = [
        ("POST", "/v1/volumes", '{"name": "x", "size": "1MiB"', 400, "invalid_argument", "malformed JSON"),
        ("POST", "/v1/volumes", '{"name": "x", "size": "1MiB", "colour": "blue"}', 400, "invalid_argument",
         "unknown field"),
        ("POST", "/v1/volumes", '{"name": 5, "size": "1MiB"}', 400, "invalid_argument", "wrong type"),
        ("POST", "/v1/volumes", '[1, 2]', 400, "invalid_argument", "not an object"),
        ("POST", "/v1/volumes", '', 400, "invalid_argument", "empty body"),
        ("POST", "/v1/volumes", big, 413, "payload_too_large", "oversized body"),
        ("POST", "/v1/volumes", {"name": "Bad_Name", "size": "1MiB"}, 400, "invalid_argument", "bad name"),
        ("POST", "/v1/volumes", {"name": "x", "size": "12parsecs"}, 400, "invalid_argument", "bad size"),
        ("POST", "/v1/volumes", {"name": "x", "size": "0"}, 400, "invalid_argument", "zero size"),
        ("POST", "/v1/volumes", {"name": "x", "size": "100TiB"}, 400, "invalid_argument", "size over the bound"),
        ("POST", "/v1/volumes", {"name": "x"}, 400, "invalid_argument", "no size"),
        ("POST", "/v1/volumes", {"name": "x", "size": "1MiB", "storageClass": "gold"}, 400, "invalid_argument",
         "unknown class"),
        ("POST", "/v1/volumes", {"name": "x", "size": "1MiB", "labels": {"bad key!": "v"}}, 400,
         "invalid_argument", "bad label"),
        ("POST", "/v1/volumes", {"name": "x", "size": "1MiB", "accessModes": ["READ_WRITE_MANY"]}, 400,
         "invalid_argument", "unknown access mode"),
        ("POST", "/v1/volumes", {"name": "keep", "size": "1MiB"}, 409, "already_exists", "duplicate name"),
        ("POST", "/v1/volumes/keep/resize", {"size": "1MiB"}, 409, "failed_precondition", "shrink"),
        ("POST", "/v1/volumes/keep/resize", {"name": "other", "size": "8MiB"}, 400, "invalid_argument",
         "body and path name differ"),
        ("POST", "/v1/volumes/keep/resize", {"size": "huge"}, 400, "invalid_argument", "bad resize size"),
        ("POST", "/v1/volumes/nope/resize", {"size": "8MiB"}, 404, "not_found", "resize unknown volume"),
        ("GET", "/v1/volumes/nope", None, 404, "not_found", "show unknown volume"),
        ("GET", "/v1/volumes/Not_A_Name", None, 400, "invalid_argument", "show bad name"),
        ("DELETE", "/v1/volumes/nope", None, 404, "not_found", "delete unknown volume"),
        ("PUT", "/v1/volumes", {"name": "x"}, 405, "method_not_allowed", "wrong method"),
        ("PATCH", "/v1/volumes/keep", {"size": "8MiB"}, 405, "method_not_allowed", "wrong method on a volume"),
        ("GET", "/v1/volumes/keep/resize", None, 405, "method_not_allowed", "GET on resize"),
        ("GET", "/v2/volumes", None, 404, "not_found", "unknown route"),
        ("GET", "/v1/volumes?colour=blue", None, 400, "invalid_argument", "unknown query parameter"),
        ("GET", "/v1/volumes?label=novalue", None, 400, "invalid_argument", "label filter without '='"),
        ("POST", "/v1/volumes", {"name": "x", "size": "1MiB"}, 415, "unsupported_media_type",
         "a body that is not JSON", ["Content-Type: text/csv"]),
    ]
    for case in cases:
        method, path, body, status, code, what = case[:6]
        headers = case[6] if len(case) > 6 else ()
        got_status, got = api.call(method, path, body, headers)
        c.ok(got_status == status and isinstance(got, dict) and got.get("code") == code and
             len(got.get("message", "")) > 10,
             f"{what}: {method} {path} -> {status} {code} with a message",
             f"got {got_status} {got}")
    # Not HTTP at all: 400, and the server lives on.
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(api.sock)
        s.sendall(b"\x16\x03\x01 hello, not http\r\n\r\n")
        reply = s.recv(4096)
    c.ok(reply.startswith(b"HTTP/1.1 400"), "garbage on the socket gets HTTP 400", reply[:60])
    c.eq(snapshot(api, b.state_dir), before, "no rejected request changed the catalog or the files")
    code, _ = api.call("GET", "/healthz")
    c.eq(code, 200, "the API still answers after every bad input")


def wait_for(api, method, path, body, refused_status=409, seconds=10):
    """Retries while the answer is `refused_status` (a lease in its grace period)."""
    wait = fx.deadline(seconds)
    status, got = api.call(method, path, body)
    while status == refused_status and wait():
        status, got = api.call(method, path, body)
    return status, got


def check_delete_while_connected(c, api, b):
    api.call("POST", "/v1/volumes", {"name": "busy", "size": "4MiB"})
    h = nbd.NBD()
    h.connect_uri(b.uri("busy"))
    h.pwrite(b"z" * 4096, 0)
    status, body = api.call("DELETE", "/v1/volumes/busy")
    c.ok(status == 409 and body["code"] == "failed_precondition" and '"127.0.0.1"' in body["message"] and
         "blockctl lease break busy" in body["message"],
         "delete refused while a client holds the volume, naming the holder and the way out", f"{status} {body}")
    c.ok(h.pread(4096, 0) == b"z" * 4096, "the connected client is undisturbed by the refused delete")
    code, shown = api.call("GET", "/v1/volumes/busy")
    c.ok(code == 200 and shown["status"]["connections"] == 1 and
         shown["status"]["lease"]["holders"][0]["holder"] == "127.0.0.1", "show reports the connection and holder",
         shown)
    h.shutdown()
    # The lease outlives the connection by the grace period (0.2 s here).
    status, body = wait_for(api, "DELETE", "/v1/volumes/busy", None)
    c.eq(status, 204, "delete works once the client has left and its lease has ended")


def check_resize_while_leased(c, api, b):
    api.call("POST", "/v1/volumes", {"name": "grow", "size": "4MiB"})
    h = nbd.NBD()
    h.connect_uri(b.uri("grow"))
    status, body = api.call("POST", "/v1/volumes/grow/resize", {"size": "12MiB"})
    c.ok(status == 409 and '"127.0.0.1"' in body["message"], "resize refused while the volume is leased",
         f"{status} {body}")
    c.eq(h.get_size(), 4 * MiB, "the session is undisturbed")
    h.shutdown()
    status, body = wait_for(api, "POST", "/v1/volumes/grow/resize", {"size": "12MiB"})
    c.ok(status == 200 and body["sizeBytes"] == str(12 * MiB), "resize answers the new size once the lease ended",
         f"{status} {body}")
    c.eq(nbd_size(b, "grow"), 12 * MiB, "a new connection sees the new size")
    h = nbd.NBD()
    h.connect_uri(b.uri("grow"))
    h.pwrite(b"e" * 4096, 12 * MiB - 4096)
    c.ok(h.pread(4096, 12 * MiB - 4096) == b"e" * 4096, "the grown end is writable")
    h.shutdown()


def check_concurrent_changes(c, api, b):
    """fio verifies I/O on one volume while the API churns others."""
    api.call("POST", "/v1/volumes", {"name": "steady", "size": "32MiB"})
    out = os.path.join(b.state_dir, "fio.json")
    fio = subprocess.Popen(
        ["fio", "--name=steady", "--ioengine=nbd", f"--uri={b.uri('steady')}", "--rw=randrw", "--bs=4k",
         "--iodepth=8", "--size=32m", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1",
         "--runtime=8", "--time_based", "--verify_state_save=0", "--output-format=json", f"--output={out}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fx.on_timeout(lambda: fio.kill())
    churn_errors = []
    rounds = 0
    wait = fx.deadline(7)
    while wait() and rounds < 60:
        name = f"churn-{rounds % 3}"
        for method, path, body, want in [("POST", "/v1/volumes", {"name": name, "size": "2MiB"}, 201),
                                         ("POST", f"/v1/volumes/{name}/resize", {"size": "6MiB"}, 200),
                                         ("DELETE", f"/v1/volumes/{name}", None, 204)]:
            status, got = api.call(method, path, body)
            if status != want:
                churn_errors.append((method, path, status, got))
        rounds += 1
    try:
        output, _ = fio.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        fio.kill()
        output = "fio timed out"
    c.ok(rounds >= 3 and not churn_errors, f"{rounds} create/resize/delete rounds during fio all succeeded",
         churn_errors[:3])
    c.eq(fio.returncode, 0, "fio with verification saw no error while volumes changed around it")
    if fio.returncode == 0:
        result = json.load(open(out))["jobs"][0]
        c.ok(result["error"] == 0 and result["read"]["io_bytes"] > 0 and result["write"]["io_bytes"] > 0,
             "fio did real reads and writes", result["error"])
    else:
        print(output[-2000:])


def check_classes(c):
    """Two classes from a config file; preallocate reserves the blocks."""
    with fx.temp_dir() as d:
        thin, thick = os.path.join(d, "thin"), os.path.join(d, "thick")
        os.makedirs(thin)
        os.makedirs(thick)
        config = os.path.join(d, "blockd.toml")
        with open(config, "w") as f:
            f.write(f'[[storage_class]]\nname = "thin"\ndirectory = "{thin}"\ndefault = true\n\n'
                    f'[[storage_class]]\nname = "thick"\ndirectory = "{thick}"\nallocation = "preallocate"\n')
        with fx.Blockd(extra=["--config", config] + GRACE) as b:
            api = Api(b.control_socket)
            code, body = api.call("GET", "/v1/storage-classes")
            names = [(s["name"], s["allocation"], s["isDefault"]) for s in body["storageClasses"]]
            c.eq(names, [("thin", "SPARSE", True), ("thick", "PREALLOCATE", False)], "classes listed from the file")
            api.call("POST", "/v1/volumes", {"name": "t1", "size": "16MiB"})
            status, thick_volume = api.call("POST", "/v1/volumes",
                                            {"name": "t2", "size": "16MiB", "storageClass": "thick"})
            c.eq(status, 201, "create in the preallocate class")
            code, listing = api.call("GET", "/v1/volumes?class=thick")
            c.eq([v["name"] for v in listing["volumes"]], ["t2"], "list filtered by class")
            thin_files = os.listdir(thin)
            thick_files = os.listdir(thick)
            c.ok(len(thin_files) == 1 and len(thick_files) == 1, "each volume's file is in its class directory")
            st_thin = os.stat(os.path.join(thin, thin_files[0]))
            st_thick = os.stat(thick_volume["backingPath"])
            c.ok(st_thin.st_blocks * 512 < MiB, "the sparse volume takes no space", st_thin.st_blocks)
            c.ok(st_thick.st_blocks * 512 >= 16 * MiB, "the preallocated volume's blocks are reserved",
                 st_thick.st_blocks)
            c.eq(nbd_size(b, "t2"), 16 * MiB, "the preallocated volume is served")


def check_block_device(c, api, b):
    """A loop device registered as a volume: its size is the device's; resize is
    refused; delete forgets it and leaves the device and its data alone."""
    image = os.path.join(b.state_dir, "lv.img")
    with open(image, "wb") as f:
        f.truncate(8 * MiB)
    r = subprocess.run(["losetup", "--find", "--show", image], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        print(f"SKIP block-device part: losetup failed: {r.stderr.strip()}")
        return
    device = r.stdout.strip()
    fx.on_timeout(lambda: subprocess.run(["losetup", "-d", device]))
    try:
        status, volume = api.call("POST", "/v1/volumes", {"name": "lv", "devicePath": device})
        c.ok(status == 201 and volume["sizeBytes"] == str(8 * MiB) and volume["blockDevice"] and
             volume["backingPath"] == device, "a block device is registered with the device's size", volume)
        status, got = api.call("POST", "/v1/volumes", {"name": "lv2", "devicePath": device})
        c.ok(status == 409 and got["code"] == "already_exists", "the same device cannot be registered twice", got)
        status, got = api.call("POST", "/v1/volumes", {"name": "lv3", "devicePath": image})
        c.ok(status == 400 and "not a block device" in got["message"], "a regular file is not registered", got)
        status, got = api.call("POST", "/v1/volumes", {"name": "lv4", "devicePath": device, "size": "1MiB"})
        c.ok(status == 400, "a device with a size is refused", got)
        h = nbd.NBD()
        h.connect_uri(b.uri("lv"))
        h.pwrite(b"d" * 4096, 4096)
        h.flush()
        h.shutdown()
        time.sleep(0.5)  # past the lease grace
        status, got = api.call("POST", "/v1/volumes/lv/resize", {"size": "16MiB"})
        c.ok(status == 409 and "lvextend" in got["message"], "resizing a device volume is refused with the reason",
             got)
        status, _ = api.call("DELETE", "/v1/volumes/lv")
        c.eq(status, 204, "a device volume is deleted (unregistered)")
        with open(device, "rb") as f:
            f.seek(4096)
            c.ok(f.read(4096) == b"d" * 4096, "the device and its data are left alone by delete")
    finally:
        subprocess.run(["losetup", "-d", device], timeout=30)


def check_tcp(c):
    """--control-listen: the same API on a TCP address, off unless asked for."""
    with fx.Blockd(extra=["--control-listen", "127.0.0.1:0"] + GRACE) as b:
        import re
        m = re.search(r"control API listening address=127\.0\.0\.1:(\d+)", b.log)
        c.require(m, "the control API logs its TCP address", b.log[-500:])
        r = subprocess.run(["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{m.group(1)}/v1/status"],
                           capture_output=True, text=True, timeout=30)
        c.ok(r.returncode == 0 and '"nbdListen"' in r.stdout, "the API answers on TCP", r.stdout + r.stderr)
    with fx.Blockd(extra=GRACE) as b:
        c.ok("control API listening address=127" not in b.log, "without --control-listen there is no TCP API")


def body(c):
    fx.require_tools("curl", "nbdinfo", "fio")
    # A short lease grace: a client that disconnects stops holding its volume quickly,
    # so delete and resize are not refused for two minutes after each check.
    b = fx.Blockd(extra=GRACE).start()
    api = Api(b.control_socket)
    c.eq(api.call("GET", "/healthz"), (200, {"status": "ok"}), "/healthz")
    c.eq(api.call("GET", "/readyz"), (200, {"status": "ready"}), "/readyz")
    c.ok(oct(os.stat(b.control_socket).st_mode & 0o777) == "0o660", "the control socket is mode 0660")

    status, created = api.call("POST", "/v1/volumes",
                               {"name": "keep", "size": "4MiB", "description": "kept across restarts",
                                "labels": {"app": "pg", "tier": "gold"}})
    c.ok(status == 201 and created["sizeBytes"] == str(4 * MiB) and created["storageClass"] == "default" and
         created["accessModes"] == ["READ_WRITE_ONCE"] and len(created["uuid"]) == 36,
         "create answers 201 with the volume", created)
    c.eq(nbd_size(b, "keep"), 4 * MiB, "the new volume is served over NBD with its size")
    status, other = api.call("POST", "/v1/volumes", {"name": "other", "size": "1000", "labels": {"app": "web"}})
    c.ok(status == 201 and other["sizeBytes"] == "1024", "a size is rounded up to a multiple of 512", other)
    code, listing = api.call("GET", "/v1/volumes?label=app=pg")
    c.eq([v["name"] for v in listing["volumes"]], ["keep"], "list filtered by label")
    code, listing = api.call("GET", "/v1/volumes?label=app=pg&label=tier=silver")
    c.eq(listing["volumes"], [], "every label filter must match")
    code, listing = api.call("GET", "/v1/volumes")
    c.eq([v["name"] for v in listing["volumes"]], ["keep", "other"], "list is sorted by name")
    code, shown = api.call("GET", "/v1/volumes/keep")
    c.ok(code == 200 and shown["description"] == "kept across restarts" and shown["labels"]["tier"] == "gold",
         "show returns the volume", shown)
    code, status_body = api.call("GET", "/v1/status")
    c.ok(code == 200 and f"127.0.0.1:{b.port}" in status_body["nbdListen"] and
         {v["name"] for v in status_body["volumes"]} == {"keep", "other"}, "/v1/status", status_body)

    h = nbd.NBD()
    h.connect_uri(b.uri("keep"))
    h.pwrite(b"k" * 65536, 0)
    h.flush()
    h.shutdown()
    time.sleep(0.5)  # past the lease grace: the bad inputs below meet a free volume

    check_bad_inputs(c, api, b)
    check_delete_while_connected(c, api, b)
    check_resize_while_leased(c, api, b)
    check_concurrent_changes(c, api, b)
    check_block_device(c, api, b)

    status, _ = api.call("DELETE", "/v1/volumes/other")
    c.eq(status, 204, "delete answers 204")
    c.ok(not os.path.exists(other["backingPath"]), "delete removes the volume's file")
    r = fx.run(["nbdinfo", "--size", b.uri("other")], check=False)
    c.ok(r.returncode != 0, "a deleted volume is no longer served")

    before = snapshot(api, b.state_dir)
    c.eq(b.stop(), 0, "blockd stops cleanly")
    b2 = fx.Blockd(state_dir=b.state_dir, extra=GRACE).start()
    api2 = Api(b2.control_socket)
    c.eq(snapshot(api2, b2.state_dir), before, "after a restart the catalog and files are as before")
    h = nbd.NBD()
    h.connect_uri(b2.uri("keep"))
    c.ok(h.pread(65536, 0) == b"k" * 65536, "after a restart the data is intact")
    h.shutdown()
    b2.stop()

    check_classes(c)
    check_tcp(c)


if __name__ == "__main__":
    fx.test_main(body, timeout=240)
