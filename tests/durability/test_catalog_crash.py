#!/usr/bin/env python3
"""SIGKILL blockd in the middle of a create / resize / delete loop driven through the
control API, restart it on the same state directory, and check that the catalog and
the files agree with what the API acknowledged:

  * every acknowledged create is there (unless an acknowledged delete followed), with
    at least the size last acknowledged; every acknowledged delete is gone;
  * the one operation in flight at the kill either happened or did not, wholly;
  * every volume's file exists with the catalog's size, every file in the class
    directory belongs to a volume (a half-made volume is rolled back, not left behind),
    and the restarted blockd serves each volume over NBD with its size.

Control: the checker is run once more on a state broken on purpose (a volume's file
removed, a stray file added) and must report both, so a checker that sees nothing
cannot pass.

Bounded: CYCLES kills (env BLOCKD_CATALOG_CRASH_CYCLES, default 25), each within a few
seconds.
"""
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
import blockd_fixture as fx  # noqa: E402

CYCLES = int(os.environ.get("BLOCKD_CATALOG_CRASH_CYCLES", "25"))
MiB = 1 << 20


def call(sock, method, path, body=None):
    conn = fx.UnixHTTPConnection(sock)
    try:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        return response.status, (json.loads(text) if text.strip() else None)
    finally:
        conn.close()


class Model:
    """What the API acknowledged: name -> size, and the operation in flight."""

    def __init__(self):
        self.volumes = {}
        self.in_flight = None
        self.acked = 0


def churn(sock, model, stop, rng):
    names = [f"v{i}" for i in range(6)]
    while not stop.is_set():
        name = rng.choice(names)
        if name not in model.volumes:
            size = rng.choice([1, 2, 4]) * MiB
            op = ("create", name, size, "POST", "/v1/volumes", {"name": name, "size": str(size)}, 201)
        elif rng.random() < 0.5:
            size = model.volumes[name] + rng.choice([1, 2]) * MiB
            op = ("resize", name, size, "POST", f"/v1/volumes/{name}/resize", {"size": str(size)}, 200)
        else:
            op = ("delete", name, None, "DELETE", f"/v1/volumes/{name}", None, 204)
        kind, name, size, method, path, body, want = op
        model.in_flight = (kind, name, size)
        try:
            status, answer = call(sock, method, path, body)
        except (OSError, http.client.HTTPException):
            return  # blockd was killed: this operation stays "in flight"
        if status != want:
            model.in_flight = None
            model.error = f"{method} {path} answered {status} {answer}"
            return
        if kind == "delete":
            del model.volumes[name]
        else:
            model.volumes[name] = size
        model.acked += 1
        model.in_flight = None


def check_state(b, model):
    """Problems with the restarted blockd's catalog and files, as sentences."""
    problems = []
    status, listing = call(b.control_socket, "GET", "/v1/volumes")
    if status != 200:
        return [f"list answered {status}"]
    found = {v["name"]: v for v in listing["volumes"]}
    flight = model.in_flight
    for name, size in model.volumes.items():
        v = found.get(name)
        if flight and flight[1] == name and flight[0] == "delete":
            continue  # either
        if v is None:
            problems.append(f"acknowledged volume {name} is missing")
        elif int(v["sizeBytes"]) != size and not (flight and flight[1] == name and flight[0] == "resize"
                                                   and int(v["sizeBytes"]) == flight[2]):
            problems.append(f"volume {name} is {v['sizeBytes']} bytes, acknowledged {size}")
    for name in found:
        if name not in model.volumes and not (flight and flight[1] == name and flight[0] == "create"):
            problems.append(f"volume {name} exists but was never acknowledged (or was deleted)")
    directory = os.path.join(b.state_dir, "volumes")
    files = set(os.listdir(directory))
    for name, v in found.items():
        base = os.path.basename(v["backingPath"])
        if base not in files:
            problems.append(f"volume {name}'s file {base} is missing")
            continue
        files.discard(base)
        if os.path.getsize(v["backingPath"]) != int(v["sizeBytes"]):
            problems.append(f"volume {name}'s file is {os.path.getsize(v['backingPath'])} bytes, "
                            f"the catalog says {v['sizeBytes']}")
    for stray in sorted(files):
        problems.append(f"file {stray} belongs to no volume")
    return problems


def served_sizes(b, names):
    out = {}
    for name in names:
        r = subprocess.run(["nbdinfo", "--size", b.uri(name)], capture_output=True, text=True, timeout=30)
        out[name] = int(r.stdout) if r.returncode == 0 else None
    return out


def body(c):
    fx.require_tools("nbdinfo")
    rng = random.Random(int(os.environ.get("BLOCKD_TEST_SEED", str(int(time.time())))))
    state = fx.temp_dir("blockd-catalog-crash-")
    model = Model()
    kills_mid_flight = 0
    for cycle in range(CYCLES):
        # A short lease grace: nbdinfo's checks must not hold the volumes for the deletes.
        b = fx.Blockd(state_dir=state.name, extra=["--lease-grace", "0.1"]).start()
        problems = check_state(b, model)
        c.ok(not problems, f"cycle {cycle}: after the restart the catalog and files agree with the API",
             problems[:5])
        if problems:
            break
        # Reconcile with what recovery decided for the operation in flight.
        status, listing = call(b.control_socket, "GET", "/v1/volumes")
        model.volumes = {v["name"]: int(v["sizeBytes"]) for v in listing["volumes"]}
        model.in_flight = None
        served = served_sizes(b, sorted(model.volumes))
        c.ok(all(served[n] == model.volumes[n] for n in served), f"cycle {cycle}: every volume is served",
             served)
        time.sleep(0.3)  # nbdinfo's leases end after the 0.1 s grace: the churn meets free volumes
        stop = threading.Event()
        worker = threading.Thread(target=churn, args=(b.control_socket, model, stop, rng), daemon=True)
        worker.start()
        time.sleep(rng.uniform(0.05, 0.8))
        b.kill()
        stop.set()
        worker.join(30)
        if getattr(model, "error", None):
            c.ok(False, "every API call before the kill was answered as expected", model.error)
            break
        kills_mid_flight += model.in_flight is not None
    c.ok(model.acked >= CYCLES, f"{model.acked} operations acknowledged over {CYCLES} kills, "
         f"{kills_mid_flight} with an operation in flight")

    # Control: break the state on purpose; the checker must see it.
    b = fx.Blockd(state_dir=state.name, extra=["--lease-grace", "0.1"]).start()
    status, listing = call(b.control_socket, "GET", "/v1/volumes")
    model.volumes = {v["name"]: int(v["sizeBytes"]) for v in listing["volumes"]}
    model.in_flight = None
    if not model.volumes:
        call(b.control_socket, "POST", "/v1/volumes", {"name": "v0", "size": str(MiB)})
        model.volumes["v0"] = MiB
        status, listing = call(b.control_socket, "GET", "/v1/volumes")
    victim = listing["volumes"][0]
    os.unlink(victim["backingPath"])
    with open(os.path.join(state.name, "volumes", "stray.img"), "wb") as f:
        f.write(b"\0" * 512)
    problems = check_state(b, model)
    c.ok(any("missing" in p for p in problems) and any("stray.img" in p for p in problems),
         "control: the checker reports a removed file and a stray one", problems)
    b.stop()


if __name__ == "__main__":
    fx.test_main(body, timeout=600)
