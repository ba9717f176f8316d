#!/usr/bin/env python3
"""One writer of the fencing test (test_fencing.py): a process with its own holder name
that keeps trying to take the lease on one volume and, while admitted, writes tagged
4 KiB blocks with FUA, logging every write it issues and every reply it gets.

    fencing_writer.py HOLDER VOLUME PORT_FILE CONTROL_SOCKET LOG_FILE BLOCKS SEED

Every block it writes carries (holder, generation, sequence, block index) and a
checksum (see pack()/unpack(), also used by the checker). The generation is the one the
lease API shows right after GO succeeds; the session is used only if the lease then
names this holder and its generation is the one read just before GO or one more (a new
grant). A bigger jump means something changed the holder in between (a break and a
re-grant), so the session may be an older generation's: it is closed unused and the
writer tries again. (The harness never breaks a lease *to* its current holder, the one
case that would jump by exactly one.)

The log, one line per event, appended with one write(2) each (so a line is whole):
    G gen t                  admitted under generation gen
    I gen seq block t        about to submit this write (t: CLOCK_MONOTONIC, before the submit)
    A gen seq block          the server acknowledged it
    E gen seq block errno    the server answered with an error
    X reason                 the session ended (error, EOF, closed by the server)
    R reason                 a GO that succeeded but was not used (see above)

The writer exits when its stdin reaches EOF (the harness closes it) or its parent dies.
It never stops writing on its own while the server accepts its writes: a client that
was fenced is stopped only by the server.
"""
import ctypes
import hashlib
import http.client
import json
import os
import random
import select
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
import blockd_fixture as fx  # noqa: E402

BLOCK = 4096
MAGIC = b"BLKDFNC1"
HEADER = struct.Struct("<8s24sQQQ")  # magic, holder, generation, sequence, block index
DIGEST = 32
QUEUE_DEPTH = 4


def pack(holder, generation, seq, block):
    header = HEADER.pack(MAGIC, holder.encode(), generation, seq, block)
    filler_len = BLOCK - HEADER.size - DIGEST
    seed = hashlib.blake2b(header).digest()
    filler = (seed * (filler_len // len(seed) + 1))[:filler_len]
    body = header + filler
    return body + hashlib.blake2b(body, digest_size=DIGEST).digest()


def unpack(data, block):
    """(holder, generation, seq) of a block's content; None if it is all zeros.

    Raises ValueError if it is not a whole, intact block written for this position."""
    if not any(data):
        return None
    body, digest = data[:-DIGEST], data[-DIGEST:]
    magic, holder, generation, seq, index = HEADER.unpack_from(body)
    if magic != MAGIC:
        raise ValueError("no tag (bad magic)")
    if hashlib.blake2b(body, digest_size=DIGEST).digest() != digest:
        raise ValueError("bad checksum (torn or mixed write)")
    if pack(holder.rstrip(b"\0").decode(), generation, seq, index) != data:
        raise ValueError("filler does not match its tag")
    if index != block:
        raise ValueError(f"block tagged for block {index}")
    return holder.rstrip(b"\0").decode(), generation, seq


def lease(control_socket, volume):
    """(generation, [write holders]) or None if the API does not answer."""
    conn = fx.UnixHTTPConnection(control_socket, timeout=5)
    try:
        conn.request("GET", f"/v1/volumes/{volume}/lease")
        r = conn.getresponse()
        text = r.read()
        if r.status != 200:
            return None
        body = json.loads(text)
        holders = [h["holder"] for h in body.get("holders", []) if h.get("mode", "rw") == "rw"]
        return int(body.get("generation", "0")), holders, body.get("state", "")
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def die_with_parent():
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def main():
    holder, volume, port_file, control_socket, log_file, blocks, seed = sys.argv[1:8]
    blocks = int(blocks)
    die_with_parent()
    import nbd  # Debian's python3-libnbd

    rng = random.Random(f"{seed}/{holder}")
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def log(line):
        os.write(fd, (line + "\n").encode())

    stdin = sys.stdin.fileno()

    def parent_gone():
        r, _, _ = select.select([stdin], [], [], 0)
        return bool(r) and os.read(stdin, 4096) == b""

    seq = 0
    while not parent_gone():
        try:
            with open(port_file) as f:
                port = int(f.read().strip())
        except (OSError, ValueError):
            time.sleep(0.02)
            continue
        before = lease(control_socket, volume)
        if before is None:
            time.sleep(0.02)
            continue
        h = nbd.NBD()
        h.set_export_name(f"{volume}?holder={holder}")
        try:
            h.connect_tcp("127.0.0.1", str(port))
        except nbd.Error:
            del h  # closes the handle (libnbd 1.14's python binding has no close())
            time.sleep(rng.uniform(0.01, 0.04))
            continue
        after = lease(control_socket, volume)
        if after is None or after[1] != [holder] or not before[0] <= after[0] <= before[0] + 1:
            log(f"R before={before} after={after}")
            del h
            continue
        generation = after[0]
        log(f"G {generation} {time.monotonic():.6f}")
        in_flight = {}  # cookie -> (seq, block, buffer)
        busy = set()    # blocks with a write in flight: writes to one block never overlap
        reason = None
        try:
            while reason is None:
                while len(in_flight) < QUEUE_DEPTH:
                    block = rng.randrange(blocks)
                    if block in busy:
                        continue
                    seq += 1
                    data = pack(holder, generation, seq, block)
                    log(f"I {generation} {seq} {block} {time.monotonic():.6f}")
                    cookie = h.aio_pwrite(data, block * BLOCK, flags=nbd.CMD_FLAG_FUA)
                    in_flight[cookie] = (seq, block, data)
                    busy.add(block)
                h.poll(200)
                for cookie in list(in_flight):
                    s, block, _ = in_flight[cookie]
                    try:
                        done = h.aio_command_completed(cookie)
                    except nbd.Error as e:
                        log(f"E {generation} {s} {block} {e.errno}")
                        del in_flight[cookie]
                        busy.discard(block)
                        reason = f"write error {e.errno}"
                        continue
                    if done:
                        log(f"A {generation} {s} {block}")
                        del in_flight[cookie]
                        busy.discard(block)
                if parent_gone():
                    reason = "harness gone"
                    break
        except nbd.Error as e:
            reason = f"connection: {e}"
        log(f"X {reason}")
        del h
    os.close(fd)


if __name__ == "__main__":
    main()
