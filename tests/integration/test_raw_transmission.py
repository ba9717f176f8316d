#!/usr/bin/env python3
"""Raw-socket tests of blockd's NBD transmission phase.

Requests no well-behaved client sends: bad magic, unknown commands and flags,
ranges past the end or overflowing 64 bits, zero lengths, oversized and absurd
writes, odd cookies, deep pipelines, hang-ups in the middle of a payload, DISC
with requests in flight, SIGTERM with requests in flight. Expected answers come
from nbd-proto.md ("Error values", "Request types", "Structured reply chunk
message") and tests/CONTRACT.md. Standalone: exit 0 pass, 1 fail, 77 skip.
"""
import os
import re
import signal
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402
import nbdraw as nr  # noqa: E402
from nbdraw import check, check_eq  # noqa: E402

KiB = 1 << 10
MiB = 1 << 20
MAX_PAYLOAD = 32 * MiB
MEM_SIZE = 64 * MiB
FILE_SIZE = 64 * MiB
OTHER_SIZE = 1 * MiB
RO_SIZE = 1 * MiB

# Layout of "mem" (each region belongs to one case):
#   [0, 1M)        MEM_PAT, never legitimately modified (rejected writes aim here)
#   [1M, 2M)       scratch for accepted flag combinations
#   [2M, 4M)       pipelined writes           [4M, 5M)  cookie test writes
#   [5M, 6M)       alignment test             [6M, 7M)  DISC test writes
#   [8M, 8M+64K)   data for BLOCK_STATUS / DF (rest of [8M, 16M) never written)
#   [16M, 48M)     the exactly-32-MiB write   [48M, 49M) must stay zero (33 MiB write rejected)
#   [56M, 60M)     never written (holes)      [S-4K, S)  END_PAT (past-end tests)
# "file": [1M, 2M) FILE_PAT (hang-up test), [4M, 4M+64K) data for BLOCK_STATUS,
#         [16M, 28.5M) pipelined-then-disconnect writes, [32M, 64M) target of a cut-short 32 MiB write,
#         [0, 1M) and [30M, 32M) never written.
MEM_PAT = nr.pattern(0x3E3, MiB)
END_PAT = nr.pattern(0xE4D, 4 * KiB)
FILE_PAT = nr.pattern(0xF11E, MiB)
BS_PAT = nr.pattern(0xB5, 64 * KiB)
OTHER_PAT = nr.pattern(0x07E, OTHER_SIZE)

STARTED = []  # every Blockd this script starts (the watchdog kills exactly these)
SRV = None
TMP = None
FILE_PATH = OTHER_PATH = None


# --- helpers -------------------------------------------------------------------------
def neg(export=b"mem", structured=False, meta=False, infos=(), srv=None):
    s = srv or SRV
    return nr.negotiate(s.host, s.port, export, structured=structured,
                        meta=[b"base:allocation"] if meta else (), infos=infos)


def expect_closed(c, what, timeout=5.0, cookie=None):
    """The server must hang up promptly. At most an error reply for `cookie` may precede it."""
    closed, data = c.wait_closed(timeout)
    c.close()
    check(closed, f"{what}: server closes the connection", f"EOF within {timeout}s",
          f"still open; received {data[:64].hex() or 'nothing'}")
    if data and cookie is not None and len(data) == 16:
        magic, err, ck = struct.unpack(">II8s", data)
        if magic == nr.SIMPLE_REPLY_MAGIC and err != 0 and ck == cookie:
            return
    check(data == b"", f"{what}: nothing sent before closing (or one error reply)", "nothing",
          data[:64].hex())


def expect_err(c, cmd, offset, length, want, what, flags=0, payload=b""):
    r = c.request(cmd, offset, length, flags, payload)
    check(r.error == want, f"{what}: {nr.cmd_name(cmd)} flags={flags:#x} offset={offset:#x} length={length:#x}",
          nr.err_name(want), f"{nr.err_name(r.error)} ({r!r})")
    if c.structured and cmd == nr.CMD_READ:
        check(not r.simple, f"{what}: READ error with structured replies must be structured", "structured", r)
    if not r.simple and want:
        content = [ch for ch in r.chunks if ch.type in (nr.REPLY_TYPE_OFFSET_DATA, nr.REPLY_TYPE_OFFSET_HOLE)]
        check(not content, f"{what}: an up-front error carries no content chunks", "none", content)
        errs = [ch for ch in r.chunks if ch.is_error]
        check(errs and all(ch.type in (nr.REPLY_TYPE_ERROR, nr.REPLY_TYPE_ERROR_OFFSET) for ch in errs),
              f"{what}: error delivered in an ERROR chunk", "NBD_REPLY_TYPE_ERROR(_OFFSET)", r.chunks)
    return r


def expect_ok(c, cmd, offset, length, what, flags=0, payload=b"", allowed=(0,)):
    r = c.request(cmd, offset, length, flags, payload)
    check(r.error in allowed, f"{what}: {nr.cmd_name(cmd)} flags={flags:#x} offset={offset:#x} length={length:#x}",
          "/".join(nr.err_name(e) for e in allowed), f"{nr.err_name(r.error)} ({r!r})")
    return r


def in_sync(c, what="stream in sync"):
    """A READ of known data right now returns exactly that data: nothing was left unread."""
    r = c.request(nr.CMD_READ, 4096, 8192)
    check(r.error == 0, f"{what}: READ succeeds", 0, r)
    d = r.read_data()
    check(d == MEM_PAT[4096:12288], f"{what}: READ data", "MEM_PAT", d[:16].hex())


def mem_unchanged(c, what):
    d = c.read(0, MiB)
    check(d == MEM_PAT, f"{what}: region [0, 1MiB) unchanged", "MEM_PAT", "modified")
    d = c.read(MEM_SIZE - 4096, 4096)
    check(d == END_PAT, f"{what}: last 4 KiB unchanged", "END_PAT", "modified")


def blockd(specs, extra=()):
    b = fx.Blockd(specs, extra=extra)
    STARTED.append(b)
    return b


def kill_started():
    for b in STARTED:
        try:
            if b.proc is not None and b.proc.poll() is None:
                sys.stderr.write("blockd log (tail):\n" + b.log[-4000:] + "\n")
                b.kill()
        except Exception:
            pass


def fresh_ok(srv=None):
    s = srv or SRV
    check(s.proc.poll() is None, "blockd is still running", "running", f"exited {s.proc.returncode}")
    with neg(srv=s) as c:
        if s is SRV:
            in_sync(c, "fresh client")
        else:
            c.read(0, 4096)


def both_modes():
    """A simple-reply connection and a structured one (with base:allocation) to 'mem'."""
    return [("simple", neg()), ("structured", neg(structured=True, meta=True))]


def send_in_thread(c, data):
    """sendall on a dup of the socket from a thread (so replies can be read meanwhile)."""
    s2 = c.sock.dup()
    s2.settimeout(30)
    box = {}

    def run():
        try:
            s2.sendall(data)
        except OSError as e:
            box["error"] = e
        finally:
            s2.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


# --- cases ---------------------------------------------------------------------------
def test_bad_request_magic_closes():
    for magic in (0x25609514, nr.SIMPLE_REPLY_MAGIC, 0, 0x21E41C71):
        c = neg()
        c.send_request(nr.CMD_READ, 0, 4096, magic=magic, track=False)
        expect_closed(c, f"request magic {magic:#010x}")
    c = neg(structured=True)
    in_sync(c)
    c.send(nr.request_bytes(nr.CMD_READ, 0, 512, 1, magic=0x12560953))
    expect_closed(c, "historic request magic 0x12560953 after a good request")
    fresh_ok()


def test_truncated_header_hangup():
    hdr = nr.request_bytes(nr.CMD_READ, 0, 4096, b"trunc!!!")
    for k in range(1, len(hdr) + 1):
        c = neg()
        c.send(hdr[:k])
        c.close() if k % 2 else c.reset()
    fresh_ok()


def test_unknown_command_einval():
    for mode, c in both_modes():
        for cmd in (99, nr.CMD_RESIZE, 0xFFFF, 12):
            expect_err(c, cmd, 0, 4096, nr.EINVAL, f"{mode}: unknown command {cmd}")
            in_sync(c, f"{mode}: after unknown command {cmd}")
        # Only WRITE carries a payload: an unknown command's length is just a number.
        for cmd, length in ((99, 0xFFFFFFFF), (0x1234, 200 * MiB)):
            expect_err(c, cmd, 0, length, nr.EINVAL, f"{mode}: unknown command {cmd} with length {length:#x}")
            in_sync(c, f"{mode}: after unknown command {cmd} with length {length:#x} (no payload expected)")
        c.close()


def test_unknown_command_flag_einval():
    for mode, c in both_modes():
        for flags in (1 << 7, 1 << 15, nr.CMD_FLAG_PAYLOAD_LEN, 1 << 6):
            expect_err(c, nr.CMD_READ, 0, 4096, nr.EINVAL, f"{mode}: READ with unknown flag", flags)
            expect_err(c, nr.CMD_WRITE, 0, 4096, nr.EINVAL, f"{mode}: WRITE with unknown flag", flags,
                       nr.pattern(flags, 4096))
            in_sync(c, f"{mode}: after WRITE with unknown flag {flags:#x} (payload drained)")
            expect_err(c, nr.CMD_FLUSH, 0, 0, nr.EINVAL, f"{mode}: FLUSH with unknown flag", flags)
            expect_err(c, nr.CMD_TRIM, 0, 4096, nr.EINVAL, f"{mode}: TRIM with unknown flag", flags)
        mem_unchanged(c, f"{mode}: rejected writes")
        c.close()


def test_flags_not_valid_for_command():
    F = nr
    bad = [
        (F.CMD_READ, F.CMD_FLAG_NO_HOLE), (F.CMD_READ, F.CMD_FLAG_REQ_ONE), (F.CMD_READ, F.CMD_FLAG_FAST_ZERO),
        (F.CMD_WRITE, F.CMD_FLAG_REQ_ONE), (F.CMD_WRITE, F.CMD_FLAG_NO_HOLE), (F.CMD_WRITE, F.CMD_FLAG_FAST_ZERO),
        (F.CMD_WRITE, F.CMD_FLAG_DF),
        (F.CMD_TRIM, F.CMD_FLAG_NO_HOLE), (F.CMD_TRIM, F.CMD_FLAG_REQ_ONE), (F.CMD_TRIM, F.CMD_FLAG_DF),
        (F.CMD_TRIM, F.CMD_FLAG_FAST_ZERO),
        (F.CMD_FLUSH, F.CMD_FLAG_DF), (F.CMD_FLUSH, F.CMD_FLAG_NO_HOLE),
        (F.CMD_CACHE, F.CMD_FLAG_REQ_ONE), (F.CMD_CACHE, F.CMD_FLAG_NO_HOLE),
        (F.CMD_WRITE_ZEROES, F.CMD_FLAG_REQ_ONE), (F.CMD_WRITE_ZEROES, F.CMD_FLAG_DF),
        (F.CMD_BLOCK_STATUS, F.CMD_FLAG_DF), (F.CMD_BLOCK_STATUS, F.CMD_FLAG_NO_HOLE),
        (F.CMD_BLOCK_STATUS, F.CMD_FLAG_FAST_ZERO),
    ]
    for mode, c in both_modes():
        for cmd, flag in bad:
            if cmd == F.CMD_BLOCK_STATUS and mode == "simple":
                continue
            length = 0 if cmd == F.CMD_FLUSH else 4096
            payload = nr.pattern(flag, 4096) if cmd == F.CMD_WRITE else b""
            expect_err(c, cmd, 0, length, nr.EINVAL, f"{mode}: flag not valid for the command", flag, payload)
        in_sync(c, f"{mode}: after the rejected flag combinations")
        mem_unchanged(c, f"{mode}: rejected write/trim/zero")
        # FUA is valid on every command once SEND_FUA is advertised ("MUST accept").
        base = MiB
        expect_ok(c, F.CMD_READ, 0, 4096, f"{mode}: FUA on READ", F.CMD_FLAG_FUA)
        expect_ok(c, F.CMD_WRITE, base, 4096, f"{mode}: FUA on WRITE", F.CMD_FLAG_FUA, nr.pattern(1, 4096))
        expect_ok(c, F.CMD_FLUSH, 0, 0, f"{mode}: FUA on FLUSH", F.CMD_FLAG_FUA)
        expect_ok(c, F.CMD_TRIM, base + 64 * KiB, 4096, f"{mode}: FUA on TRIM", F.CMD_FLAG_FUA)
        expect_ok(c, F.CMD_CACHE, 0, 4096, f"{mode}: FUA on CACHE", F.CMD_FLAG_FUA)
        expect_ok(c, F.CMD_WRITE_ZEROES, base + 128 * KiB, 4096, f"{mode}: NO_HOLE|FUA on WRITE_ZEROES",
                  F.CMD_FLAG_NO_HOLE | F.CMD_FLAG_FUA)
        expect_ok(c, F.CMD_WRITE_ZEROES, base + 192 * KiB, 4096, f"{mode}: FAST_ZERO on WRITE_ZEROES",
                  F.CMD_FLAG_FAST_ZERO, allowed=(0, nr.ENOTSUP))
        if mode == "structured":
            expect_ok(c, F.CMD_BLOCK_STATUS, 0, 4096, f"{mode}: REQ_ONE on BLOCK_STATUS", F.CMD_FLAG_REQ_ONE)
            expect_ok(c, F.CMD_READ, 0, 4096, f"{mode}: DF on READ", F.CMD_FLAG_DF)
        in_sync(c, f"{mode}: after the accepted flag combinations")
        c.close()


def test_past_end():
    S = MEM_SIZE
    ranges = [(S - 512, 1024), (S, 512), (S + 4096, 4096), (S - 4096, 8192), (1 << 62, 512)]
    for mode, c in both_modes():
        for off, ln in ranges:
            for cmd in (nr.CMD_READ, nr.CMD_TRIM, nr.CMD_CACHE):
                expect_err(c, cmd, off, ln, nr.EINVAL, f"{mode}: past the end")
            if mode == "structured":
                expect_err(c, nr.CMD_BLOCK_STATUS, off, ln, nr.EINVAL, f"{mode}: past the end")
            expect_err(c, nr.CMD_WRITE, off, ln, nr.ENOSPC, f"{mode}: past the end", payload=nr.pattern(off, ln))
            expect_err(c, nr.CMD_WRITE_ZEROES, off, ln, nr.ENOSPC, f"{mode}: past the end")
            in_sync(c, f"{mode}: after past-the-end requests at {off:#x}+{ln:#x}")
        mem_unchanged(c, f"{mode}: writes past the end must not write their in-range part")
        # The very last block is still perfectly usable.
        expect_ok(c, nr.CMD_READ, S - 512, 512, f"{mode}: last block")
        c.close()


def test_offset_length_overflow():
    # offset + length wraps around 2^64 to a small number: must not be mistaken for an in-range request.
    cases = [((1 << 64) - 512, 1024), ((1 << 64) - 4096, 0xFFFFFFFF), ((1 << 64) - 1, 2)]
    for mode, c in both_modes():
        for off, ln in cases:
            for cmd in (nr.CMD_READ, nr.CMD_TRIM, nr.CMD_CACHE, nr.CMD_WRITE_ZEROES):
                expect_err(c, cmd, off, ln, nr.EINVAL, f"{mode}: offset+length overflows 64 bits")
            if mode == "structured":
                expect_err(c, nr.CMD_BLOCK_STATUS, off, ln, nr.EINVAL, f"{mode}: offset+length overflows 64 bits")
            if ln <= 4096:
                expect_err(c, nr.CMD_WRITE, off, ln, nr.EINVAL, f"{mode}: offset+length overflows 64 bits",
                           payload=nr.pattern(7, ln))
            in_sync(c, f"{mode}: after overflowing requests at {off:#x}+{ln:#x}")
        mem_unchanged(c, f"{mode}: overflowing writes")
        c.close()


def test_zero_length_requests():
    for mode, c in both_modes():
        for off in (0, 4096, MEM_SIZE):
            for cmd in (nr.CMD_READ, nr.CMD_WRITE, nr.CMD_TRIM, nr.CMD_WRITE_ZEROES, nr.CMD_FLUSH, nr.CMD_CACHE) + (
                    (nr.CMD_BLOCK_STATUS,) if mode == "structured" else ()):
                o = 0 if cmd == nr.CMD_FLUSH else off
                # The spec leaves the outcome unspecified ("SHOULD NOT disconnect"): any sane reply will do.
                r = expect_ok(c, cmd, o, 0, f"{mode}: zero length (a reply, never a disconnect)",
                              allowed=(0, nr.EINVAL, nr.ENOSPC))
                if cmd == nr.CMD_READ and r.simple:
                    check_eq(r.data, b"", f"{mode}: zero-length READ payload")
                if cmd == nr.CMD_READ and not r.simple and r.error == 0:
                    check(len(r.chunks) == 1 and r.chunks[0].type == nr.REPLY_TYPE_NONE and r.chunks[0].done,
                          f"{mode}: successful zero-length READ at {o}", "[NONE+DONE]", r.chunks)
                if cmd == nr.CMD_BLOCK_STATUS and r.error == 0:
                    bs = [ch for ch in r.chunks if ch.type == nr.REPLY_TYPE_BLOCK_STATUS]
                    check(o == MEM_SIZE or len(bs) == 1, f"{mode}: zero-length BLOCK_STATUS at {o}",
                          "one BLOCK_STATUS chunk", r.chunks)
                    for ch in bs:
                        check(all(e[0] > 0 for e in ch.extents), "extent lengths are nonzero", ">0", ch.extents)
            in_sync(c, f"{mode}: after zero-length requests at {off}")
        mem_unchanged(c, f"{mode}: zero-length writes")
        c.close()


def test_block_status_without_meta_context():
    c = neg(structured=True)
    expect_err(c, nr.CMD_BLOCK_STATUS, 0, 4096, nr.EINVAL, "structured replies, no SET_META_CONTEXT")
    expect_err(c, nr.CMD_BLOCK_STATUS, 0, 4096, nr.EINVAL, "same with REQ_ONE", nr.CMD_FLAG_REQ_ONE)
    in_sync(c)
    c.close()
    c = neg()
    r = expect_err(c, nr.CMD_BLOCK_STATUS, 0, 4096, nr.EINVAL, "no structured replies at all")
    check(r.simple, "without structured replies the error must be a simple reply", "simple", r)
    in_sync(c)
    c.close()


def test_df():
    c = neg()
    check(not c.tflags & nr.TF_SEND_DF, "SEND_DF not advertised without structured replies", "clear", hex(c.tflags))
    r = expect_err(c, nr.CMD_READ, 0, 4096, nr.EINVAL, "DF without structured replies", nr.CMD_FLAG_DF)
    check(r.simple and r.data == b"", "DF error is a simple reply without payload", "simple, no data", r)
    in_sync(c)
    c.close()
    c = neg(structured=True)
    check(c.tflags & nr.TF_SEND_DF, "SEND_DF advertised with structured replies", "set", hex(c.tflags))
    # 64 KiB straddling data and a hole: exactly one OFFSET_DATA chunk, zeroes explicit.
    off = 8 * MiB + 32 * KiB
    r = expect_ok(c, nr.CMD_READ, off, 64 * KiB, "DF read of 64 KiB over data+hole", nr.CMD_FLAG_DF)
    content = [ch for ch in r.chunks if ch.type in (nr.REPLY_TYPE_OFFSET_DATA, nr.REPLY_TYPE_OFFSET_HOLE)]
    check(len(content) == 1 and content[0].type == nr.REPLY_TYPE_OFFSET_DATA,
          "DF: at most one content chunk, OFFSET_DATA when data and hole mix", "1 OFFSET_DATA", r.chunks)
    check(r.read_data() == BS_PAT[32 * KiB:] + b"\0" * (32 * KiB), "DF read data", "data then zeroes", "different")
    r = c.request(nr.CMD_READ, 0, MiB, nr.CMD_FLAG_DF)
    content = [ch for ch in r.chunks if ch.type in (nr.REPLY_TYPE_OFFSET_DATA, nr.REPLY_TYPE_OFFSET_HOLE)]
    if r.error:
        check(r.error == nr.EOVERFLOW and not content, "DF read of 1 MiB: EOVERFLOW without content, or one chunk",
              "EOVERFLOW, no content chunk", r)
    else:
        check(len(content) == 1 and r.read_data() == MEM_PAT, "DF read of 1 MiB: one content chunk",
              "1 chunk with MEM_PAT", r.chunks)
    in_sync(c)
    c.close()


def test_write_over_max_payload():
    c = neg()
    # Exactly the maximum payload works (write and simple-reply read).
    big = nr.pattern(0x32, MAX_PAYLOAD)
    expect_ok(c, nr.CMD_WRITE, 16 * MiB, MAX_PAYLOAD, "WRITE of exactly 32 MiB", payload=big)
    r = expect_ok(c, nr.CMD_READ, 16 * MiB, MAX_PAYLOAD, "READ of exactly 32 MiB")
    check(r.data == big, "32 MiB read back", "same data", "different")
    # 33 MiB: drained, EINVAL, in sync, nothing written.
    over = nr.pattern(0x33, 33 * MiB)
    expect_err(c, nr.CMD_WRITE, 16 * MiB, 33 * MiB, nr.EINVAL, "WRITE of 33 MiB (over the maximum payload)",
               payload=over)
    in_sync(c, "after the 33 MiB WRITE")
    d = c.read(16 * MiB, MiB)
    check(d == big[:MiB], "rejected 33 MiB WRITE wrote nothing at its start", "previous data", "overwritten")
    d = c.read(48 * MiB, MiB)
    check(d == b"\0" * MiB, "rejected 33 MiB WRITE wrote nothing past 48 MiB", "zeroes", "overwritten")
    # A simple-reply READ over the maximum payload fails ("will fail"), without payload.
    r = expect_err(c, nr.CMD_READ, 0, 33 * MiB, nr.EINVAL, "simple READ of 33 MiB")
    in_sync(c, "after the 33 MiB READ")
    c.close()


def test_absurd_write_length_closes():
    for length in (0xFFFFFFFF, 128 * MiB + 1, 0x80000000):
        c = neg()
        ck = c.send_request(nr.CMD_WRITE, 0, length, cookie=b"absurd!!", payload=MEM_PAT[:4096][::-1])
        t0 = time.monotonic()
        expect_closed(c, f"WRITE with length {length:#x} (payload never sent)", cookie=ck)
        check(time.monotonic() - t0 < 5, "closed promptly", "< 5s", f"{time.monotonic() - t0:.1f}s")
    fresh_ok()
    with neg() as c:
        mem_unchanged(c, "absurd writes")


ODD_COOKIES = [b"\x00" * 8, b"\xff" * 8, b"\x80\x00\x00\x00\x00\x00\x00\x01", b"\x01\x00\x00\x00\x00\x00\x00\x80",
               b"\x00\xff\x00\xff\xff\x00\xff\x00", b"NBDMAGIC", b"\x25\x60\x95\x13\x67\x44\x66\x98",
               b"\xde\xad\xbe\xef\xca\xfe\xba\xbe", b"\x7f\xff\xff\xff\xff\xff\xff\xfe", b"\x00\x00\x00\x00\xff\xff\xff\xff",
               os.urandom(8), b"\x0a\x0d\x00\x1b\x5c\x22\x27\x60"]


def test_cookies_echoed():
    for mode, c in both_modes():
        reqs, expect = [], {}
        for i, ck in enumerate(ODD_COOKIES):
            kind = i % 4
            if kind == 0:
                off = i * 8192
                reqs.append(nr.request_bytes(nr.CMD_READ, off, 4096, ck))
                c.track(nr.CMD_READ, off, 4096, ck)
                expect[ck] = ("read", MEM_PAT[off:off + 4096])
            elif kind == 1:
                off = 4 * MiB + i * 4096
                reqs.append(nr.request_bytes(nr.CMD_WRITE, off, 4096, ck, payload=nr.pattern(i, 4096)))
                c.track(nr.CMD_WRITE, off, 4096, ck)
                expect[ck] = ("ok", None)
            elif kind == 2:
                reqs.append(nr.request_bytes(nr.CMD_READ, MEM_SIZE, 512, ck))  # error reply
                c.track(nr.CMD_READ, MEM_SIZE, 512, ck)
                expect[ck] = ("einval", None)
            else:
                reqs.append(nr.request_bytes(nr.CMD_FLUSH, 0, 0, ck))
                c.track(nr.CMD_FLUSH, 0, 0, ck)
                expect[ck] = ("ok", None)
        c.send(b"".join(reqs))
        seen = []
        for r in c.read_replies(len(reqs)):
            seen.append(r.cookie)
            check(r.cookie in expect, f"{mode}: reply cookie is one we sent", "one of ours", r.cookie.hex())
            kind, data = expect[r.cookie]
            what = f"{mode}: reply for cookie {r.cookie.hex()}"
            if kind == "read":
                check(r.error == 0 and r.read_data() == data, what, "READ data of that request", r)
            elif kind == "einval":
                check_eq(nr.err_name(r.error), "EINVAL", what)
            else:
                check(r.error == 0, what, "success", r)
            if not r.simple:
                check(all(ch.cookie == r.cookie for ch in r.chunks), f"{what}: every chunk echoes it", r.cookie.hex(),
                      [ch.cookie.hex() for ch in r.chunks])
        check_eq(sorted(seen), sorted(ODD_COOKIES), f"{mode}: each cookie answered exactly once")
        for i, ck in enumerate(ODD_COOKIES):
            if i % 4 == 1:
                off = 4 * MiB + i * 4096
                check(c.read(off, 4096) == nr.pattern(i, 4096), f"{mode}: write with cookie {ck.hex()} landed",
                      "pattern", "different")
        c.close()


def test_pipelined_requests(n=256):
    for mode, c in both_modes():
        reqs, expect = [], {}
        for i in range(n):
            ck = struct.pack(">Q", 0xA5A5000000000000 | (i * 0x01000193))
            if i % 2 == 0:
                off = 2 * MiB + (i // 2) * 8192
                reqs.append(nr.request_bytes(nr.CMD_WRITE, off, 8192, ck, payload=nr.pattern(i, 8192)))
                c.track(nr.CMD_WRITE, off, 8192, ck)
                expect[ck] = None
            elif i % 16 == 15:
                reqs.append(nr.request_bytes(nr.CMD_FLUSH, 0, 0, ck))
                c.track(nr.CMD_FLUSH, 0, 0, ck)
                expect[ck] = None
            else:
                off = (i * 4096) % (MiB - 8192)
                reqs.append(nr.request_bytes(nr.CMD_READ, off, 8192, ck))
                c.track(nr.CMD_READ, off, 8192, ck)
                expect[ck] = MEM_PAT[off:off + 8192]
        t, box = send_in_thread(c, b"".join(reqs))
        replies = c.read_replies(n, timeout=30)
        t.join(10)
        check("error" not in box, f"{mode}: sending {n} pipelined requests", "no error", box.get("error"))
        cookies = [r.cookie for r in replies]
        check(len(set(cookies)) == n and set(cookies) == set(expect), f"{mode}: each of {n} cookies exactly once",
              n, f"{len(set(cookies))} distinct of {len(cookies)}")
        order = [list(expect).index(ck) for ck in cookies]
        print(f"    {mode}: {n} replies, {'in order' if order == sorted(order) else 'out of order'}")
        for r in replies:
            check(r.error == 0, f"{mode}: pipelined {nr.cmd_name(r.cmd)} succeeds", 0, r)
            if expect[r.cookie] is not None:
                check(r.read_data() == expect[r.cookie], f"{mode}: pipelined READ data (cookie {r.cookie.hex()})",
                      "the data at its offset", "different")
        for i in range(0, n, 2):
            off = 2 * MiB + (i // 2) * 8192
            check(c.read(off, 8192) == nr.pattern(i, 8192), f"{mode}: pipelined write {i} landed", "pattern", "no")
        c.close()


def test_deep_pipeline(n=2048):
    """Far more requests in flight than any per-connection limit (the kernel uses 128): the
    server must apply backpressure, not drop, duplicate or deadlock, while we read replies."""
    for mode, c in both_modes():
        reqs, expect = [], {}
        for i in range(n):
            ck = struct.pack(">II", 0xDEE9, i)
            off = (i * 65536) % MiB
            reqs.append(nr.request_bytes(nr.CMD_READ, off, 64 * KiB, ck))
            c.track(nr.CMD_READ, off, 64 * KiB, ck)
            expect[ck] = off
        t, box = send_in_thread(c, b"".join(reqs))
        replies = c.read_replies(n, timeout=60)
        t.join(10)
        check("error" not in box, f"{mode}: sending {n} pipelined READs", "no error", box.get("error"))
        check_eq(len({r.cookie for r in replies}), n, f"{mode}: distinct cookies answered")
        for r in replies:
            off = expect[r.cookie]
            check(r.error == 0 and r.read_data() == MEM_PAT[off:off + 64 * KiB], f"{mode}: deep-pipeline READ",
                  "data at its offset", r)
        in_sync(c, f"{mode}: after {n} pipelined READs")
        c.close()


def test_trickled_request():
    """Header and payload dribbled a few bytes at a time: reassembled exactly, nothing early."""
    c = neg(structured=True)
    data = nr.pattern(0x7C1, 4096)
    msg = nr.request_bytes(nr.CMD_WRITE, MiB + 256 * KiB, 4096, b"trickle!", payload=data)
    c.track(nr.CMD_WRITE, MiB + 256 * KiB, 4096, b"trickle!")
    for i in range(0, len(msg), 97):
        c.send(msg[i:i + 97])
        time.sleep(0.003)
    r = c.read_reply()
    check(r.error == 0 and r.cookie == b"trickle!", "trickled WRITE", "success", r)
    hdr = nr.request_bytes(nr.CMD_READ, MiB + 256 * KiB, 4096, b"trickleR")
    c.track(nr.CMD_READ, MiB + 256 * KiB, 4096, b"trickleR")
    for i in range(len(hdr)):
        c.send(hdr[i:i + 1])
        time.sleep(0.002)
    r = c.read_reply()
    check(r.error == 0 and r.read_data() == data, "READ with a header sent byte by byte", "the trickled data", r)
    c.close()


def test_hangup_mid_write_payload():
    base = 1 * MiB
    variants = []
    for length in (MiB, 64 * KiB, 4096, 512):
        for sent in (0, 1, length // 2, length - 1):
            variants.append((length, sent))
    for i, (length, sent) in enumerate(variants):
        c = neg(b"file", structured=bool(i % 2))
        c.send(nr.request_bytes(nr.CMD_WRITE, base, length, b"hangup!!", payload=b"\xee" * sent))
        c.reset() if i % 3 == 0 else c.close()
    # A maximum-size write cut short: a server that streams the payload to disk as it arrives would leak here.
    big_base = 32 * MiB
    for i, sent in enumerate((MAX_PAYLOAD - 1, MAX_PAYLOAD // 2 + 4096)):
        c = neg(b"file")
        c.send(nr.request_bytes(nr.CMD_WRITE, big_base, MAX_PAYLOAD, b"bighang!", payload=b"\xee" * sent))
        c.reset() if i % 2 == 0 else c.close()
    time.sleep(0.5)
    with neg(b"file") as c:
        d = c.read(base, MiB)
        check(d == FILE_PAT, "no part of a write whose payload was cut short reaches the volume",
              "FILE_PAT unchanged", f"{d.count(0xEE)} bytes of 0xee")
        d = c.read(big_base, MAX_PAYLOAD)
        check(d.count(0) == MAX_PAYLOAD, "no part of a cut-short 32 MiB write reaches the volume",
              "zeroes", f"{MAX_PAYLOAD - d.count(0)} nonzero bytes")
        c.flush()
    d = nr.file_bytes(FILE_PATH, base, MiB)
    check(d == FILE_PAT, "backing file unchanged after cut-short writes", "FILE_PAT", f"{d.count(0xEE)} bytes of 0xee")
    d = nr.file_bytes(FILE_PATH, big_base, MAX_PAYLOAD)
    check(d.count(0) == MAX_PAYLOAD, "backing file unchanged after a cut-short 32 MiB write", "zeroes",
          f"{MAX_PAYLOAD - d.count(0)} nonzero bytes")
    fresh_ok()


def test_pipelined_writes_then_disconnect(rounds=4, n=200):
    other_seen = OTHER_PAT
    for rnd in range(rounds):
        a = neg(b"file", structured=bool(rnd % 2))
        reqs = b"".join(nr.request_bytes(nr.CMD_WRITE, 16 * MiB + i * 64 * KiB, 64 * KiB, i,
                                         flags=nr.CMD_FLAG_FUA if i % 50 == 0 else 0,
                                         payload=nr.pattern(1000 * rnd + i, 64 * KiB)) for i in range(n))
        if rnd == 3:
            reqs = reqs[:len(reqs) // 2 + 7]  # also cut one payload short
        a.send(reqs)
        a.reset() if rnd % 2 == 0 else a.close()
        # Straight away: new connections (fd numbers get reused) to another volume.
        b = neg(b"other", structured=bool(rnd % 2))
        d = b.read(0, OTHER_SIZE)
        check(d == other_seen, f"round {rnd}: 'other' volume untouched", "previous content", "modified")
        mine = nr.pattern(0xB0B0 + rnd, 64 * KiB)
        off = (rnd * 128 * KiB) % OTHER_SIZE
        b.write(off, mine)
        other_seen = other_seen[:off] + mine + other_seen[off + len(mine):]
        stray = b.pending_bytes(0.3)
        check(stray == b"", f"round {rnd}: nothing unexpected arrives on the new connection", "nothing",
              (stray or b"")[:64].hex() if stray is not None else "connection closed")
        check(b.read(0, OTHER_SIZE) == other_seen, f"round {rnd}: new client's data intact", "its data", "different")
        b.flush()
        b.close()
    time.sleep(0.5)
    with neg(b"file") as c:
        check(c.read(0, MiB) == b"\0" * MiB, "'file' [0, 1MiB) untouched by the disconnected writers", "zeroes", "data")
        check(c.read(30 * MiB, 2 * MiB) == b"\0" * (2 * MiB), "'file' [30, 32MiB) untouched", "zeroes", "data")
        check(c.read(MiB, MiB) == FILE_PAT, "'file' [1, 2MiB) untouched", "FILE_PAT", "modified")
        c.flush()
    with neg(b"other") as c:
        check(c.read(0, OTHER_SIZE) == other_seen, "'other' holds exactly what its own clients wrote", "yes", "no")
    check(nr.file_bytes(OTHER_PATH, 0, OTHER_SIZE) == other_seen, "'other' backing file matches", "yes", "no")
    fresh_ok()


def test_structured_read_chunks():
    c = neg(structured=True)
    for off, ln in ((0, 256 * KiB), (4096, 512), (8 * MiB, 64 * KiB), (1000, 3000)):
        r = expect_ok(c, nr.CMD_READ, off, ln, "structured READ of data")
        bad = [ch for ch in r.chunks if ch.type not in (nr.REPLY_TYPE_OFFSET_DATA, nr.REPLY_TYPE_NONE)]
        check(not bad, f"READ {off}+{ln} of written data: only OFFSET_DATA (and a final NONE)", "OFFSET_DATA*", r.chunks)
        check(r.chunks[-1].done and not any(ch.done for ch in r.chunks[:-1]), "DONE on the last chunk only",
              "last", r.chunks)
        want = (MEM_PAT + b"\0" * (8 * MiB))[off:off + ln] if off < 8 * MiB else BS_PAT[:ln]
        check(r.read_data() == want, f"READ {off}+{ln} data", "pattern", "different")
    # A never-written region: OFFSET_DATA of zeroes or OFFSET_HOLE, either way reads as zeroes.
    r = expect_ok(c, nr.CMD_READ, 56 * MiB, MiB, "structured READ of a hole")
    check(r.read_data() == b"\0" * MiB, "hole reads as zeroes", "zeroes", "data")
    r = expect_ok(c, nr.CMD_READ, 4096, 0, "zero-length structured READ", allowed=(0, nr.EINVAL))
    if r.error == 0:
        check(len(r.chunks) == 1 and r.chunks[0].type == nr.REPLY_TYPE_NONE and r.chunks[0].done,
              "zero-length READ", "[NONE+DONE]", r.chunks)
    # Errors arrive as ERROR chunks (never a simple reply to READ).
    expect_err(c, nr.CMD_READ, MEM_SIZE - 512, 1024, nr.EINVAL, "structured READ past the end")
    expect_err(c, nr.CMD_READ, 0, 4096, nr.EINVAL, "structured READ with an unknown flag", 1 << 9)
    in_sync(c)
    c.close()
    c = neg(structured=True, infos=[nr.INFO_BLOCK_SIZE])
    expect_err(c, nr.CMD_READ, 1, 4096, nr.EINVAL, "structured READ misaligned after BLOCK_SIZE negotiation")
    in_sync(c)
    c.close()


def extents_of(r, ctx_ids):
    bs = [ch for ch in r.chunks if ch.type == nr.REPLY_TYPE_BLOCK_STATUS]
    check(len(bs) == 1, "exactly one BLOCK_STATUS chunk (one context)", 1, r.chunks)
    check(bs[0].context_id in ctx_ids, "BLOCK_STATUS context id is the negotiated one", ctx_ids, bs[0].context_id)
    for ln, fl in bs[0].extents:
        check(ln > 0, "extent length nonzero", "> 0", bs[0].extents)
    return bs[0].extents


def test_block_status():
    for vol, data_off, hole_off in ((b"mem", 8 * MiB, 56 * MiB), (b"file", 4 * MiB, 30 * MiB)):
        c = neg(vol, structured=True, meta=True)
        ids = list(c.contexts)
        what = f"{vol.decode()}"
        # REQ_ONE: exactly one extent, no longer than asked.
        for off, ln in ((data_off, MiB), (data_off, 4096), (data_off + 32 * KiB, 2 * MiB), (hole_off, MiB),
                        (hole_off, 512), (0, 32 * MiB)):
            r = expect_ok(c, nr.CMD_BLOCK_STATUS, off, ln, f"{what}: BLOCK_STATUS REQ_ONE", nr.CMD_FLAG_REQ_ONE)
            ex = extents_of(r, ids)
            check(len(ex) == 1 and ex[0][0] <= ln, f"{what}: REQ_ONE {off:#x}+{ln:#x}: exactly one extent <= length",
                  f"1 extent of <= {ln}", ex)
            if off in (data_off, data_off + 32 * KiB):
                check(not ex[0][1] & nr.STATE_HOLE, f"{what}: written data is not reported as a hole", "HOLE clear", ex)
            if off == hole_off:
                check_eq(ex[0][1], nr.STATE_HOLE | nr.STATE_ZERO, f"{what}: never-written region at {off:#x} flags")
        # Without REQ_ONE over data followed by a hole: the data extent, then a hole|zero extent.
        r = expect_ok(c, nr.CMD_BLOCK_STATUS, data_off, 2 * MiB, f"{what}: BLOCK_STATUS without REQ_ONE")
        ex = extents_of(r, ids)
        check(sum(e[0] for e in ex[:-1]) < 2 * MiB, f"{what}: first N-1 extents stay within the request", "< 2MiB", ex)
        check(not ex[0][1] & nr.STATE_HOLE, f"{what}: first extent (written data) is not a hole", "HOLE clear", ex)
        if vol == b"file":
            check(64 * KiB <= ex[0][0] <= MiB, f"{what}: data extent length (SEEK_HOLE; 64 KiB written)",
                  "64 KiB (up to fs allocation granularity)", ex[0][0])
            check(len(ex) >= 2 and ex[1][1] == nr.STATE_HOLE | nr.STATE_ZERO, f"{what}: hole after the data",
                  "(…, 3)", ex)
        c.close()


def test_disc_after_inflight():
    for mode, structured in (("simple", False), ("structured", True)):
        c = neg(structured=structured)
        reqs, cks = [], []
        for i in range(8):
            ck = struct.pack(">Q", 0xD15C0000 + i)
            reqs.append(nr.request_bytes(nr.CMD_READ, 0, MiB, ck))
            c.track(nr.CMD_READ, 0, MiB, ck)
            cks.append(ck)
        for i in range(4):
            ck = struct.pack(">Q", 0xD15C1000 + i)
            reqs.append(nr.request_bytes(nr.CMD_WRITE, 6 * MiB + i * 64 * KiB, 64 * KiB, ck,
                                         payload=nr.pattern(0xD15C + i, 64 * KiB)))
            c.track(nr.CMD_WRITE, 6 * MiB + i * 64 * KiB, 64 * KiB, ck)
            cks.append(ck)
        reqs.append(nr.request_bytes(nr.CMD_DISC, 0, 0, b"disc!!!!"))
        t, box = send_in_thread(c, b"".join(reqs))
        replies = c.read_replies(len(cks), timeout=20)
        t.join(10)
        check_eq(sorted(r.cookie for r in replies), sorted(cks), f"{mode}: every in-flight request answered before DISC closes")
        for r in replies:
            check(r.error == 0, f"{mode}: in-flight {nr.cmd_name(r.cmd)}", 0, r)
            if r.cmd == nr.CMD_READ:
                check(r.read_data() == MEM_PAT, f"{mode}: in-flight READ data", "MEM_PAT", "different")
        closed, data = c.wait_closed(5)
        check(closed and data == b"", f"{mode}: after DISC the server closes, sending nothing more",
              "EOF, no data", f"closed={closed} data={data[:32].hex()}")
        c.close()
        with neg() as c2:
            for i in range(4):
                check(c2.read(6 * MiB + i * 64 * KiB, 64 * KiB) == nr.pattern(0xD15C + i, 64 * KiB),
                      f"{mode}: write {i} sent before DISC landed", "pattern", "different")
    c = neg()
    c.disc()
    closed, data = c.wait_closed(5)
    check(closed and data == b"", "DISC with nothing in flight closes", "EOF", f"closed={closed} data={data.hex()}")
    fresh_ok()


def test_read_only_volume_eperm():
    for mode, structured in (("simple", False), ("structured", True)):
        c = neg(b"ro", structured=structured)
        check(c.tflags & nr.TF_READ_ONLY, f"{mode}: READ_ONLY advertised", "set", hex(c.tflags))
        expect_err(c, nr.CMD_WRITE, 0, 4096, nr.EPERM, f"{mode}: read-only volume", payload=b"\x11" * 4096)
        expect_err(c, nr.CMD_WRITE, 0, 4096, nr.EPERM, f"{mode}: read-only volume, FUA", nr.CMD_FLAG_FUA,
                   b"\x11" * 4096)
        expect_err(c, nr.CMD_TRIM, 0, 4096, nr.EPERM, f"{mode}: read-only volume")
        expect_err(c, nr.CMD_WRITE_ZEROES, 0, 4096, nr.EPERM, f"{mode}: read-only volume")
        r = expect_ok(c, nr.CMD_READ, 0, 4096, f"{mode}: read-only volume READ")
        check(r.read_data() == b"\0" * 4096, f"{mode}: read-only volume unchanged", "zeroes", "modified")
        c.close()


def test_alignment_only_with_block_size():
    c = neg()
    expect_ok(c, nr.CMD_WRITE, 5 * MiB + 513, 10, "unaligned WRITE without BLOCK_SIZE negotiation",
              payload=b"0123456789")
    r = expect_ok(c, nr.CMD_READ, 5 * MiB + 511, 14, "unaligned READ without BLOCK_SIZE negotiation")
    check_eq(r.read_data(), b"\0\0" + b"0123456789" + b"\0\0", "unaligned read-back")
    c.close()
    c = neg(infos=[nr.INFO_BLOCK_SIZE])
    expect_err(c, nr.CMD_READ, 5 * MiB + 1, 512, nr.EINVAL, "misaligned offset after BLOCK_SIZE negotiation")
    expect_err(c, nr.CMD_READ, 5 * MiB, 100, nr.EINVAL, "misaligned length after BLOCK_SIZE negotiation")
    expect_err(c, nr.CMD_WRITE, 5 * MiB + 512, 100, nr.EINVAL, "misaligned WRITE after BLOCK_SIZE negotiation",
               payload=b"\x22" * 100)
    in_sync(c)
    expect_ok(c, nr.CMD_WRITE, 5 * MiB + 512, 512, "aligned WRITE after BLOCK_SIZE negotiation", payload=b"\x33" * 512)
    check(c.read(5 * MiB + 512, 512) == b"\x33" * 512, "aligned write landed", "0x33", "different")
    c.close()


def test_sigterm_inside_write_payload():
    # A client that stops in the middle of a write payload must not hold up a shutdown
    # until its timeout: the payload is read by io_uring, which Asio's cancel does not
    # reach, so the drain also shuts the socket's receive side.
    path = os.path.join(TMP.name, "stall.img")
    srv = blockd([f"name=disk,path={path},size={64 * MiB}"], extra=["--shutdown-timeout", "20"])
    srv.start()
    try:
        c = neg(b"disk", srv=srv)
        c.send(nr.request_bytes(nr.CMD_WRITE, 0, MiB, 7) + b"\x5a" * 1000)
        time.sleep(0.2)
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        try:
            code = srv.proc.wait(15)
        except Exception:
            code = "still running 15s after SIGTERM"
        elapsed = time.monotonic() - started
        check_eq(code, 0, "SIGTERM inside a write payload: blockd exits")
        check(elapsed < 10, "SIGTERM inside a write payload: exits well before --shutdown-timeout",
              "< 10 s", f"{elapsed:.1f} s")
        check("client left inside a write payload" in srv.log,
              "SIGTERM inside a write payload: the session ends there", "its log line", "missing")
        check(nr.file_bytes(path, 0, 1000) != b"\x5a" * 1000,
              "SIGTERM inside a write payload: nothing of the partial payload was written", "not written",
              "written")
        c.close()
    finally:
        srv.kill()


def test_sigterm():
    path = os.path.join(TMP.name, "term.img")
    srv = blockd([f"name=disk,path={path},size={64 * MiB}"], extra=["--shutdown-timeout", "10"])
    srv.start()
    try:
        idle = neg(b"disk", srv=srv)
        half = nr.Conn(srv.host, srv.port)
        half.read_greeting()
        half.send_client_flags(nr.FLAG_C_FIXED_NEWSTYLE | nr.FLAG_C_NO_ZEROES)
        busy = neg(b"disk", structured=True, srv=srv)
        n = 48
        reqs = []
        for i in range(n):
            reqs.append(nr.request_bytes(nr.CMD_WRITE, i * MiB, MiB, i, payload=nr.pattern(0x5160 + i, MiB)))
            busy.track(nr.CMD_WRITE, i * MiB, MiB, i)
        t, box = send_in_thread(busy, b"".join(reqs))
        time.sleep(0.05)
        srv.proc.send_signal(signal.SIGTERM)
        t.join(20)
        # Only requests sent once blockd has certainly seen the signal count as "new requests":
        # wait for its shutdown log line (any wording with SIGTERM/shutting down/draining), plus a margin.
        end = time.monotonic() + 5
        while time.monotonic() < end and not re.search(r"SIGTERM|shutting down|draining", srv.log, re.I):
            time.sleep(0.02)
        time.sleep(0.3)
        # Requests sent after SIGTERM (if the connection is still open).
        late = []
        for i in range(4):
            ck = struct.pack(">Q", 0x1A7E0000 + i)
            try:
                busy.send_request(nr.CMD_READ, 0, 4096, cookie=ck)
                late.append(ck)
            except nr.Closed:
                break
        replies, end = [], None
        while True:
            try:
                replies.append(busy.read_reply(timeout=20))
            except nr.Closed as e:
                end = f"closed ({e})"
                check(not e.data, "SIGTERM: the busy connection ends on a message boundary", "", e.data.hex())
                break
            except nr.Timeout:
                end = "timeout"
                break
            if not busy.inflight:
                end = "all answered"
                break
        errs = {}
        for r in replies:
            errs[nr.err_name(r.error)] = errs.get(nr.err_name(r.error), 0) + 1
            check(r.error in (0, nr.ESHUTDOWN), f"SIGTERM: reply to {nr.cmd_name(r.cmd)} {r.cookie.hex()}",
                  "OK or ESHUTDOWN", nr.err_name(r.error))
            if r.cookie in late:
                check_eq(nr.err_name(r.error), "ESHUTDOWN", "SIGTERM: request sent after the signal")
        print(f"    busy connection: {len(replies)} replies {errs}, {len(late)} late requests, end: {end}")
        check(end != "timeout", "SIGTERM: the busy connection is answered and/or closed", "no hang", end)
        # The idle session: a new request gets ESHUTDOWN (or the session was already closed cleanly).
        try:
            r = idle.request(nr.CMD_READ, 0, 4096, timeout=10)
            check_eq(nr.err_name(r.error), "ESHUTDOWN", "SIGTERM: new request on an idle session")
            print("    idle session: ESHUTDOWN")
        except nr.Closed as e:
            check(not e.data, "SIGTERM: idle session closed cleanly", "", e.data.hex())
            print("    idle session: closed")
        # A handshake in progress: ERR_SHUTDOWN or closed, never admitted.
        try:
            g = half.go(b"disk")
            check_eq(nr.rep_name(g.final), "REP_ERR_SHUTDOWN", "SIGTERM: GO on a handshake in progress")
        except nr.Closed:
            pass
        # New connections are no longer admitted.
        try:
            nc = nr.Conn(srv.host, srv.port, timeout=5)
            try:
                nc.read_greeting()
                nc.send_client_flags(nr.FLAG_C_FIXED_NEWSTYLE)
                g = nc.go(b"disk")
                check_eq(nr.rep_name(g.final), "REP_ERR_SHUTDOWN", "SIGTERM: GO on a connection accepted after it")
            except nr.Closed:
                pass
            nc.close()
        except OSError:
            pass  # refused: listener closed
        for c in (idle, half, busy):
            c.close()
        try:
            code = srv.proc.wait(25)
        except Exception:
            code = "still running 25s after SIGTERM"
        check_eq(code, 0, "blockd exit status after SIGTERM")
        # Every write that was acknowledged is in the file (flushed before exit).
        for r in replies:
            if r.cmd == nr.CMD_WRITE and r.error == 0:
                i = struct.unpack(">Q", r.cookie)[0]
                check(nr.file_bytes(path, i * MiB, MiB) == nr.pattern(0x5160 + i, MiB),
                      f"SIGTERM: acknowledged write {i} is in the backing file", "its data", "missing")
    finally:
        srv.kill()


CASES = [
    test_bad_request_magic_closes,
    test_truncated_header_hangup,
    test_unknown_command_einval,
    test_unknown_command_flag_einval,
    test_flags_not_valid_for_command,
    test_past_end,
    test_offset_length_overflow,
    test_zero_length_requests,
    test_block_status_without_meta_context,
    test_df,
    test_write_over_max_payload,
    test_absurd_write_length_closes,
    test_cookies_echoed,
    test_pipelined_requests,
    test_deep_pipeline,
    test_trickled_request,
    test_hangup_mid_write_payload,
    test_pipelined_writes_then_disconnect,
    test_structured_read_chunks,
    test_block_status,
    test_disc_after_inflight,
    test_read_only_volume_eperm,
    test_alignment_only_with_block_size,
    test_sigterm,
    test_sigterm_inside_write_payload,
]


def main():
    global SRV, TMP, FILE_PATH, OTHER_PATH
    if not os.access(fx.blockd_bin(), os.X_OK):
        fx.skip(f"{fx.blockd_bin()} not built")
    TMP = fx.temp_dir()
    FILE_PATH = os.path.join(TMP.name, "file.img")
    OTHER_PATH = os.path.join(TMP.name, "other.img")
    specs = [
        f"name=mem,backend=memory,size={MEM_SIZE}",
        f"name=file,path={FILE_PATH},size={FILE_SIZE}",
        f"name=other,path={OTHER_PATH},size={OTHER_SIZE}",
        f"name=ro,backend=memory,size={RO_SIZE},read-only",
    ]
    SRV = blockd(specs)
    watchdog = nr.start_watchdog(240, kill_started)
    try:
        SRV.start()
        with neg() as c:
            c.write(0, MEM_PAT)
            c.write(MEM_SIZE - 4096, END_PAT)
            c.write(8 * MiB, BS_PAT)
            c.flush()
        with neg(b"file") as c:
            c.write(MiB, FILE_PAT)
            c.write(4 * MiB, BS_PAT)
            c.flush()
        with neg(b"other") as c:
            c.write(0, OTHER_PAT)
            c.flush()
        rc = nr.run_cases(nr.select_cases(CASES, sys.argv[1:]))
        code = SRV.stop()
        if code != 0:
            print(f"FAIL: blockd exited with {code} after SIGTERM (expected 0)")
            rc = 1
        if rc:
            print("--- blockd log (tail) ---")
            print("\n".join(SRV.log.splitlines()[-60:]))
        return rc
    finally:
        watchdog.cancel()
        SRV.kill()
        TMP.cleanup()


if __name__ == "__main__":
    sys.exit(main())
