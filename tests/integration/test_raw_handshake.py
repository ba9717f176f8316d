#!/usr/bin/env python3
"""Raw-socket tests of blockd's NBD handshake (fixed newstyle option haggling).

Every case here sends something libnbd would never send (bad flags, lying lengths,
bad magic, half a handshake, hundreds of connections) and checks the exact reply
the NBD spec (nbd-proto.md) and tests/CONTRACT.md demand. Standalone: exit 0 pass,
1 fail, 77 skip (no blockd binary).
"""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402
import nbdraw as nr  # noqa: E402
from nbdraw import check, check_eq  # noqa: E402

MiB = 1 << 20
VOLUMES = {  # name -> (size, read_only, description)
    "disk": (64 * MiB, False, None),
    "second": (16 * MiB, False, b"Second volume"),
    "ro": (1 * MiB, True, None),
}
MAX_PAYLOAD = 32 * MiB
RW_FLAGS = (nr.TF_HAS_FLAGS | nr.TF_SEND_FLUSH | nr.TF_SEND_FUA | nr.TF_SEND_TRIM
            | nr.TF_SEND_WRITE_ZEROES | nr.TF_SEND_FAST_ZERO | nr.TF_SEND_CACHE | nr.TF_CAN_MULTI_CONN)
GOOD_CFLAGS = nr.FLAG_C_FIXED_NEWSTYLE | nr.FLAG_C_NO_ZEROES

STARTED = []  # every Blockd this script starts (the watchdog kills exactly these)
SRV = None  # the shared blockd (started in main)
TMP = None
DISK_PATTERN = nr.pattern(0xD15C, 4096)


# --- helpers -------------------------------------------------------------------------
def conn(timeout=10.0):
    return nr.Conn(SRV.host, SRV.port, timeout)


def start(cflags=GOOD_CFLAGS, srv=None):
    """Connected, greeted, client flags sent: ready for options."""
    s = srv or SRV
    c = nr.Conn(s.host, s.port)
    c.read_greeting()
    c.send_client_flags(cflags)
    return c


def expect_closed(c, what, timeout=5.0, allowed=b""):
    """The server must hang up within timeout, sending nothing (beyond `allowed`)."""
    closed, data = c.wait_closed(timeout)
    c.close()
    check(closed, f"{what}: server did not close the connection within {timeout}s",
          "EOF/reset", f"still open; received {data[:64].hex() or 'nothing'}")
    check(data == allowed, f"{what}: server sent data before closing", allowed.hex() or "nothing", data[:64].hex())


def expect_single(c, opt, data, rep, what, length=None):
    """Send an option; expect exactly one reply (final) of type rep, echoing opt."""
    replies = c.option(opt, data, length)
    check(len(replies) == 1 and replies[0].type == rep and replies[0].opt == opt,
          f"{what}: {nr.opt_name(opt)} reply", f"[{nr.rep_name(rep)}]", replies)
    return replies[0]


def read_ok(c, offset=0, length=4096, expect=None):
    d = c.read(offset, length)
    check_eq(len(d), length, "read length")
    if expect is not None:
        check(d == expect, f"READ {offset}+{length} data", expect[:16].hex() + "...", d[:16].hex() + "...")
    return d


def go_and_read(c, name=b"disk"):
    g = c.go(name)
    check_eq(nr.rep_name(g.final), "REP_ACK", f"GO {name!r} after the preceding options")
    read_ok(c, 0, 4096, DISK_PATTERN if name in (b"disk", b"") else None)
    c.close()


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
    """A brand-new client can still GO and READ (the server is healthy)."""
    s = srv or SRV
    check(s.proc.poll() is None, "blockd is still running", "running", f"exited {s.proc.returncode}")
    with nr.negotiate(s.host, s.port, b"disk") as c:
        read_ok(c, 0, 4096, DISK_PATTERN if s is SRV else None)


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def wait_fds_back(base, what, timeout=8.0):
    end = time.monotonic() + timeout
    n = fd_count(SRV.proc.pid)
    while n > base + 2 and time.monotonic() < end:
        time.sleep(0.1)
        n = fd_count(SRV.proc.pid)
    check(n <= base + 2, f"{what}: blockd's open file descriptors return to the baseline (fd leak?)",
          f"<= {base + 2}", n)


# --- cases ---------------------------------------------------------------------------
def test_greeting_flags():
    c = conn()
    hf = c.read_greeting()
    c.close()
    check_eq(hf, nr.FLAG_FIXED_NEWSTYLE | nr.FLAG_NO_ZEROES,
             "handshake flags (FIXED_NEWSTYLE|NO_ZEROES, no other bits allowed)")


def test_unknown_client_flags_close():
    for flags in (nr.FLAG_C_FIXED_NEWSTYLE | 1 << 2, 1 << 31, 0xFFFFFFFF, nr.FLAG_C_NO_ZEROES | 1 << 5):
        c = start(flags)
        expect_closed(c, f"client flags {flags:#x}")
    # Unknown flags followed by a perfectly good option: still closed, no reply.
    c = conn()
    c.read_greeting()
    c.send(struct.pack(">I", 1 << 3) + nr.option_bytes(nr.OPT_LIST))
    expect_closed(c, "client flags 0x8 followed by NBD_OPT_LIST")
    fresh_ok()


def test_no_fixed_newstyle_export_name():
    for cflags, zeroes in ((0, True), (nr.FLAG_C_NO_ZEROES, False)):
        c = start(cflags)
        size, tflags, z = c.export_name(b"disk")
        check_eq(size, VOLUMES["disk"][0], f"cflags={cflags:#x}: EXPORT_NAME size")
        check(tflags & nr.TF_HAS_FLAGS, f"cflags={cflags:#x}: HAS_FLAGS in transmission flags", "set", hex(tflags))
        if zeroes:
            check_eq(z, b"\0" * 124, "124 zero bytes after EXPORT_NAME without NO_ZEROES")
        read_ok(c, 0, 4096, DISK_PATTERN)
        c.close()


def test_unknown_option_unsup():
    c = start()
    expect_single(c, 0x7F3A, b"junk\x00\x01\x02", nr.REP_ERR_UNSUP, "unknown option 0x7f3a with 7 data bytes")
    expect_single(c, 0xDEADBEEF, b"", nr.REP_ERR_UNSUP, "unknown option 0xdeadbeef, no data")
    expect_single(c, nr.OPT_PEEK_EXPORT, b"\0" * 9, nr.REP_ERR_UNSUP, "withdrawn NBD_OPT_PEEK_EXPORT")
    go_and_read(c)


def test_option_64k_data_is_read():
    # CONTRACT: only option data *longer* than 64 KiB closes; 64 KiB exactly is read and answered.
    c = start()
    expect_single(c, 0x7F3B, nr.pattern(7, 65536), nr.REP_ERR_UNSUP, "unknown option with 65536 data bytes")
    go_and_read(c)


def test_absurd_option_length_closes():
    for opt, length in ((nr.OPT_GO, 0x7FFFFFFF), (0x7F3C, 0xFFFFFFFF), (nr.OPT_INFO, 65537),
                        (nr.OPT_LIST_META_CONTEXT, 0x7FFFFFFF)):
        c = start()
        t0 = time.monotonic()
        c.send_option(opt, b"", length=length)  # header only: the data never comes
        expect_closed(c, f"{nr.opt_name(opt)} with option length {length:#x} (no data sent)")
        check(time.monotonic() - t0 < 5, "closed promptly", "< 5s", f"{time.monotonic() - t0:.1f}s")
    fresh_ok()


def test_bad_option_magic_closes():
    c = start()
    c.send_option(nr.OPT_LIST, magic=0x49484156454F5058)  # "IHAVEOPX"
    expect_closed(c, "first option with magic IHAVEOPX")
    c = start()
    expect_single(c, nr.OPT_STRUCTURED_REPLY, b"", nr.REP_ACK, "STRUCTURED_REPLY")
    c.send_option(nr.OPT_GO, nr.info_data(b"disk"), magic=nr.NBDMAGIC)
    expect_closed(c, "GO with magic NBDMAGIC after a good option")
    c = start()
    c.send_option(nr.OPT_GO, nr.info_data(b"disk"), magic=nr.REQUEST_MAGIC)  # a transmission header
    expect_closed(c, "GO with magic 0x25609513")
    fresh_ok()


def test_list_with_data_invalid():
    c = start()
    expect_single(c, nr.OPT_LIST, b"disk", nr.REP_ERR_INVALID, "NBD_OPT_LIST with 4 data bytes")
    replies = c.option(nr.OPT_LIST)
    check_eq(nr.rep_name(replies[-1].type), "REP_ACK", "LIST without data after the rejected one (in sync)")
    go_and_read(c)


def parse_server_reply(r):
    check(len(r.data) >= 4, "NBD_REP_SERVER at least 4 bytes", ">= 4", len(r.data))
    (n,) = struct.unpack(">I", r.data[:4])
    check(n <= len(r.data) - 4, "NBD_REP_SERVER name length within the reply", f"<= {len(r.data) - 4}", n)
    return r.data[4:4 + n], r.data[4 + n:]


def test_list_lists_volumes():
    c = start()
    replies = c.option(nr.OPT_LIST)
    check_eq(nr.rep_name(replies[-1].type), "REP_ACK", "LIST final reply")
    bad = [r for r in replies[:-1] if r.type != nr.REP_SERVER]
    check(not bad, "LIST: only NBD_REP_SERVER before the ACK", "REP_SERVER*", bad)
    entries = dict(parse_server_reply(r) for r in replies[:-1])
    names = sorted(entries)
    check_eq(names, sorted(n.encode() for n in VOLUMES), "LIST export names")
    check_eq(len(replies) - 1, len(VOLUMES), "LIST: one NBD_REP_SERVER per volume")
    for n, rest in entries.items():
        desc = VOLUMES[n.decode()][2]
        check(rest in (b"", desc or b""), f"LIST {n!r}: trailing details are empty or the description",
              f"b'' or {desc!r}", rest)
    # LIST twice in one session is fine and the session continues.
    check_eq(len(c.option(nr.OPT_LIST)), len(VOLUMES) + 1, "second LIST reply count")
    go_and_read(c)


def test_structured_reply_with_data_invalid():
    c = start()
    expect_single(c, nr.OPT_STRUCTURED_REPLY, b"\0\0\0\0", nr.REP_ERR_INVALID, "STRUCTURED_REPLY with 4 data bytes")
    # The failed option must not have enabled structured replies.
    expect_single(c, nr.OPT_SET_META_CONTEXT, nr.meta_data(b"disk", [b"base:allocation"]), nr.REP_ERR_INVALID,
                  "SET_META_CONTEXT after a *rejected* STRUCTURED_REPLY")
    g = c.go(b"disk")
    check_eq(nr.rep_name(g.final), "REP_ACK", "GO after the rejected STRUCTURED_REPLY")
    check(not g.tflags & nr.TF_SEND_DF, "no NBD_FLAG_SEND_DF without structured replies", "clear", hex(g.tflags))
    r = c.request(nr.CMD_READ, 0, 4096)
    check(r.simple and r.error == 0 and r.data == DISK_PATTERN, "READ answered with a simple reply",
          "simple reply, error 0, data", r)
    c.close()
    # Then a proper STRUCTURED_REPLY on the same session works.
    c = start()
    expect_single(c, nr.OPT_STRUCTURED_REPLY, b"x", nr.REP_ERR_INVALID, "STRUCTURED_REPLY with 1 data byte")
    expect_single(c, nr.OPT_STRUCTURED_REPLY, b"", nr.REP_ACK, "STRUCTURED_REPLY without data (in sync)")
    c.structured = True
    g = c.go(b"disk")
    check_eq(nr.rep_name(g.final), "REP_ACK", "GO")
    check(g.tflags & nr.TF_SEND_DF, "NBD_FLAG_SEND_DF with structured replies", "set", hex(g.tflags))
    r = c.request(nr.CMD_READ, 0, 4096)
    check(not r.simple and r.error == 0 and r.read_data() == DISK_PATTERN, "READ answered with structured chunks",
          "structured, data", r)
    c.close()


def test_set_meta_context_before_structured_reply_invalid():
    c = start()
    q = nr.meta_data(b"disk", [b"base:allocation"])
    expect_single(c, nr.OPT_SET_META_CONTEXT, q, nr.REP_ERR_INVALID, "SET_META_CONTEXT before STRUCTURED_REPLY")
    expect_single(c, nr.OPT_STRUCTURED_REPLY, b"", nr.REP_ACK, "STRUCTURED_REPLY afterwards")
    c.structured = True
    g = c.go(b"disk")
    check_eq(nr.rep_name(g.final), "REP_ACK", "GO")
    # The rejected SET_META_CONTEXT selected nothing: BLOCK_STATUS must fail with EINVAL.
    r = c.request(nr.CMD_BLOCK_STATUS, 0, 4096)
    check_eq(nr.err_name(r.error), "EINVAL", "BLOCK_STATUS when the only SET_META_CONTEXT was rejected")
    read_ok(c, 0, 4096, DISK_PATTERN)
    c.close()


def sr_start():
    c = start()
    expect_single(c, nr.OPT_STRUCTURED_REPLY, b"", nr.REP_ACK, "STRUCTURED_REPLY")
    c.structured = True
    return c


def test_meta_context_base_allocation():
    c = sr_start()
    t, ctx, rs = c.meta_context(nr.OPT_LIST_META_CONTEXT, b"disk", [b"base:allocation"])
    check(t == nr.REP_ACK and [n for _, n in ctx] == [b"base:allocation"],
          "LIST_META_CONTEXT [base:allocation]", "[base:allocation] + ACK", rs)
    t, ctx, rs = c.meta_context(nr.OPT_LIST_META_CONTEXT, b"disk", [])
    check(t == nr.REP_ACK and b"base:allocation" in [n for _, n in ctx],
          "LIST_META_CONTEXT with no query lists everything", "base:allocation among them + ACK", rs)
    t, ctx, rs = c.meta_context(nr.OPT_LIST_META_CONTEXT, b"disk", [b"base:"])
    check(t == nr.REP_ACK and [n for _, n in ctx] == [b"base:allocation"],
          "LIST_META_CONTEXT [base:] (wildcard, MUST be supported)", "[base:allocation] + ACK", rs)
    t, ctx, rs = c.meta_context(nr.OPT_SET_META_CONTEXT, b"disk", [b"base:allocation"])
    check(t == nr.REP_ACK and [n for _, n in ctx] == [b"base:allocation"],
          "SET_META_CONTEXT [base:allocation]", "[base:allocation] + ACK", rs)
    ctx_id = ctx[0][0]
    g = c.go(b"disk")
    check_eq(nr.rep_name(g.final), "REP_ACK", "GO after SET_META_CONTEXT")
    r = c.request(nr.CMD_BLOCK_STATUS, 0, 65536)
    check(r.error == 0 and [ch.type for ch in r.chunks if ch.type == nr.REPLY_TYPE_BLOCK_STATUS] == [nr.REPLY_TYPE_BLOCK_STATUS],
          "BLOCK_STATUS: exactly one BLOCK_STATUS chunk", "1 chunk, no error", r)
    bs = [ch for ch in r.chunks if ch.type == nr.REPLY_TYPE_BLOCK_STATUS][0]
    check_eq(bs.context_id, ctx_id, "BLOCK_STATUS context id = id from SET_META_CONTEXT")
    c.close()


def test_meta_context_unknown_namespace_ignored():
    c = sr_start()
    for opt in (nr.OPT_LIST_META_CONTEXT, nr.OPT_SET_META_CONTEXT):
        t, ctx, rs = c.meta_context(opt, b"disk", [b"x-nonesuch:foo"])
        check(t == nr.REP_ACK and ctx == [], f"{nr.opt_name(opt)} [x-nonesuch:foo] is ignored",
              "only REP_ACK", rs)
        t, ctx, rs = c.meta_context(opt, b"disk", [b"x-nonesuch:foo", b"qemu:dirty-bitmap:x", b"base:allocation"])
        check(t == nr.REP_ACK and [n for _, n in ctx] == [b"base:allocation"],
              f"{nr.opt_name(opt)} [x-nonesuch:foo, qemu:dirty-bitmap:x, base:allocation]",
              "[base:allocation] + ACK", rs)
        t, ctx, rs = c.meta_context(opt, b"disk", [b"base:nonesuch"])
        check(t == nr.REP_ACK and ctx == [], f"{nr.opt_name(opt)} [base:nonesuch] (unknown leaf MUST be ignored)",
              "only REP_ACK", rs)
    t, ctx, rs = c.meta_context(nr.OPT_SET_META_CONTEXT, b"disk", [b"base:"])
    check(t == nr.REP_ACK and ctx == [], "SET_META_CONTEXT [base:] (MUST be ignored in SET)", "only REP_ACK", rs)
    go_and_read(c)


def test_meta_context_malformed_invalid():
    c = sr_start()
    bad = [
        ("query length 1000 > remaining data", nr.meta_data(b"disk", [b"base:allocation"], querylens=[1000])),
        ("query length 16 > remaining 15", nr.meta_data(b"disk", [b"base:allocation"], querylens=[16])),
        ("query length 0xffffffff", nr.meta_data(b"disk", [b"base:allocation"], querylens=[0xFFFFFFFF])),
        ("2 queries announced, 1 sent", nr.meta_data(b"disk", [b"base:allocation"], nrqueries=2)),
        ("export name length 1000 > option length", nr.meta_data(b"disk", [b"base:allocation"], namelen=1000)),
        ("option data of 3 bytes", b"\0\0\0"),
        ("no query count", struct.pack(">I", 4) + b"disk"),
    ]
    for opt in (nr.OPT_LIST_META_CONTEXT, nr.OPT_SET_META_CONTEXT):
        for what, data in bad:
            rs = c.option(opt, data)
            check(rs[-1].type == nr.REP_ERR_INVALID, f"{nr.opt_name(opt)} with {what}",
                  "... REP_ERR_INVALID", rs)
    # In sync: a correct SET_META_CONTEXT now works, and a malformed one afterwards clears the selection
    # ("replaces all previously-set metadata contexts (including when this command fails)").
    t, ctx, rs = c.meta_context(nr.OPT_SET_META_CONTEXT, b"disk", [b"base:allocation"])
    check(t == nr.REP_ACK and len(ctx) == 1, "SET_META_CONTEXT after the malformed ones", "1 context + ACK", rs)
    rs = c.option(nr.OPT_SET_META_CONTEXT, nr.meta_data(b"disk", [b"base:allocation"], querylens=[99]))
    check_eq(nr.rep_name(rs[-1].type), "REP_ERR_INVALID", "malformed SET_META_CONTEXT")
    g = c.go(b"disk")
    check_eq(nr.rep_name(g.final), "REP_ACK", "GO")
    r = c.request(nr.CMD_BLOCK_STATUS, 0, 4096)
    check_eq(nr.err_name(r.error), "EINVAL", "BLOCK_STATUS after the last SET_META_CONTEXT failed (no contexts)")
    c.close()


def test_go_name_length_mismatch_invalid():
    c = start()
    bad = [
        ("name length 100 > option length - 6", nr.info_data(b"disk", namelen=100)),
        ("name length 5 (one more than sent)", nr.info_data(b"disk", namelen=5)),
        ("name length 2 (two fewer than sent)", nr.info_data(b"disk", namelen=2)),
        ("name length 0xffffffff", nr.info_data(b"disk", namelen=0xFFFFFFFF)),
        ("3 info requests announced, 1 sent", nr.info_data(b"disk", [nr.INFO_BLOCK_SIZE], nrinfos=3)),
        ("1 trailing byte", nr.info_data(b"disk", [nr.INFO_BLOCK_SIZE], extra=b"\x01")),
        ("odd trailing info bytes", nr.info_data(b"disk", [], extra=b"\0\x03")),
        ("option data of 5 bytes", b"\0\0\0\0\0"),
        ("empty option data", b""),
    ]
    for opt in (nr.OPT_INFO, nr.OPT_GO):
        for what, data in bad:
            rs = c.option(opt, data)
            check(rs[-1].type == nr.REP_ERR_INVALID, f"{nr.opt_name(opt)} with {what} ({data[:24].hex()})",
                  "... REP_ERR_INVALID", rs)
            infos = [r for r in rs[:-1] if r.type == nr.REP_INFO]
            check(not infos, f"{nr.opt_name(opt)} with {what}: no NBD_REP_INFO for an unparsable request",
                  "none", infos)
    go_and_read(c)


def info_set(res):
    return sorted(res.infos)


def test_info_and_go_identical():
    combos = [(), (nr.INFO_NAME, nr.INFO_DESCRIPTION, nr.INFO_BLOCK_SIZE), (nr.INFO_BLOCK_SIZE,),
              (nr.INFO_NAME,), (nr.INFO_DESCRIPTION, 0x7777)]
    for name, canonical in ((b"disk", b"disk"), (b"", b"disk"), (b"second", b"second"), (b"ro", b"ro")):
        size, ro, desc = VOLUMES[canonical.decode()]
        for structured in (False, True):
            for infos in combos:
                what = f"export {name!r} infos={list(infos)} structured={structured}"
                c = start()
                if structured:
                    expect_single(c, nr.OPT_STRUCTURED_REPLY, b"", nr.REP_ACK, "STRUCTURED_REPLY")
                    c.structured = True
                i = c.info(name, infos)
                g = c.go(name, infos)
                check(i.final == nr.REP_ACK and g.final == nr.REP_ACK, f"{what}: INFO and GO succeed",
                      "ACK, ACK", (i, g))
                check_eq(info_set(g), info_set(i), f"{what}: NBD_REP_INFO set of GO == that of INFO")
                check(i.types.count(nr.INFO_EXPORT) == 1, f"{what}: exactly one NBD_INFO_EXPORT", 1, i.types)
                check(len(set(i.types)) == len(i.types), f"{what}: no info type twice", "unique", i.types)
                check_eq(i.size, size, f"{what}: export size")
                want = RW_FLAGS | (nr.TF_SEND_DF if structured else 0)
                if ro:
                    check(i.tflags & nr.TF_READ_ONLY, f"{what}: READ_ONLY", "set", hex(i.tflags))
                else:
                    check(not i.tflags & nr.TF_READ_ONLY, f"{what}: READ_ONLY", "clear", hex(i.tflags))
                    check_eq(hex(i.tflags & ~nr.TF_ROTATIONAL), hex(want), f"{what}: transmission flags")
                check_eq(bool(i.tflags & nr.TF_SEND_DF), structured, f"{what}: SEND_DF iff structured replies")
                if nr.INFO_BLOCK_SIZE in infos:
                    check_eq(i.block_size, (512, 4096, MAX_PAYLOAD), f"{what}: NBD_INFO_BLOCK_SIZE")
                if nr.INFO_DESCRIPTION in infos and desc is not None:
                    check_eq(i.description, desc, f"{what}: NBD_INFO_DESCRIPTION")
                if i.name is not None:
                    check_eq(i.name, canonical, f"{what}: NBD_INFO_NAME is the canonical name")
                if name == b"" and nr.INFO_NAME in infos:
                    check_eq(i.name, canonical, f"{what}: NBD_INFO_NAME for the default export")
                c.close()


def test_go_unknown_export():
    c = start()
    for opt in (nr.OPT_INFO, nr.OPT_GO):
        rs = c.option(opt, nr.info_data(b"nonesuch", [nr.INFO_BLOCK_SIZE]))
        check(len(rs) == 1 and rs[0].type == nr.REP_ERR_UNKNOWN, f"{nr.opt_name(opt)} 'nonesuch'",
              "[REP_ERR_UNKNOWN] (no NBD_REP_INFO)", rs)
    rs = c.option(nr.OPT_GO, nr.info_data(b"DISK"))
    check(rs[-1].type == nr.REP_ERR_UNKNOWN, "GO 'DISK' (names are case-sensitive)", "REP_ERR_UNKNOWN", rs)
    go_and_read(c)


def test_export_name_length_limits():
    c = start()
    n4096 = b"v" * 4096
    n4097 = b"v" * 4097
    for opt in (nr.OPT_INFO, nr.OPT_GO):
        rs = c.option(opt, nr.info_data(n4096))
        check(len(rs) == 1 and rs[0].type == nr.REP_ERR_UNKNOWN, f"{nr.opt_name(opt)} with a 4096-byte name",
              "[REP_ERR_UNKNOWN]", rs)
        rs = c.option(opt, nr.info_data(n4097))
        check(len(rs) == 1 and rs[0].type == nr.REP_ERR_INVALID, f"{nr.opt_name(opt)} with a 4097-byte name",
              "[REP_ERR_INVALID]", rs)
    go_and_read(c)
    c = start()
    c.send_option(nr.OPT_EXPORT_NAME, n4097)
    expect_closed(c, "EXPORT_NAME with a 4097-byte name")
    c = start()
    c.send_option(nr.OPT_EXPORT_NAME, n4096)
    expect_closed(c, "EXPORT_NAME with a 4096-byte unknown name")
    fresh_ok()


def test_export_name_unknown_closes():
    for cflags in (GOOD_CFLAGS, 0):
        c = start(cflags)
        c.send_option(nr.OPT_EXPORT_NAME, b"nonesuch")
        expect_closed(c, f"EXPORT_NAME 'nonesuch' (client flags {cflags:#x})")
    fresh_ok()


def test_export_name_zeroes():
    for cflags in (nr.FLAG_C_FIXED_NEWSTYLE, GOOD_CFLAGS):
        for name, size in ((b"disk", VOLUMES["disk"][0]), (b"", VOLUMES["disk"][0]), (b"second", VOLUMES["second"][0])):
            c = start(cflags)
            if name == b"second":  # EXPORT_NAME after STRUCTURED_REPLY: DF advertised, chunks used
                expect_single(c, nr.OPT_STRUCTURED_REPLY, b"", nr.REP_ACK, "STRUCTURED_REPLY")
                c.structured = True
            sz, tflags, z = c.export_name(name)
            what = f"EXPORT_NAME {name!r} client flags {cflags:#x}"
            check_eq(sz, size, f"{what}: size")
            want = RW_FLAGS | (nr.TF_SEND_DF if c.structured else 0)
            check_eq(hex(tflags & ~nr.TF_ROTATIONAL), hex(want), f"{what}: transmission flags")
            if cflags & nr.FLAG_C_NO_ZEROES:
                check(z is None, what, "no zeroes read", z)
            else:
                check_eq(z, b"\0" * 124, f"{what}: 124 zero bytes")
            # The very next bytes must be the reply to our READ: nothing extra was sent.
            extra = c.pending_bytes(0.2)
            check_eq(extra, b"", f"{what}: nothing after the export information")
            r = c.request(nr.CMD_READ, 0, 4096)
            check(r.error == 0, f"{what}: READ works", 0, r)
            if name != b"second":
                check(r.read_data() == DISK_PATTERN, f"{what}: READ data", "pattern", r.read_data()[:16].hex())
            c.close()


def test_abort():
    c = start()
    expect_single(c, nr.OPT_ABORT, b"", nr.REP_ACK, "ABORT")
    expect_closed(c, "after ABORT's ACK")
    c = sr_start()
    c.option(nr.OPT_LIST)
    expect_single(c, nr.OPT_ABORT, b"", nr.REP_ACK, "ABORT after other options")
    expect_closed(c, "after ABORT's ACK")
    fresh_ok()


def test_starttls_unsup():
    c = start()
    expect_single(c, nr.OPT_STARTTLS, b"", nr.REP_ERR_UNSUP, "STARTTLS (blockd has no TLS)")
    go_and_read(c)


def handshake_script():
    """The client's whole side of a typical handshake, as one byte string."""
    return (struct.pack(">I", GOOD_CFLAGS)
            + nr.option_bytes(nr.OPT_STRUCTURED_REPLY)
            + nr.option_bytes(nr.OPT_SET_META_CONTEXT, nr.meta_data(b"disk", [b"base:allocation"]))
            + nr.option_bytes(nr.OPT_LIST)
            + nr.option_bytes(nr.OPT_GO, nr.info_data(b"disk", [nr.INFO_BLOCK_SIZE]))
            + nr.request_bytes(nr.CMD_READ, 0, 4096, cookie=b"hangup!!"))


def test_hangup_at_every_byte():
    fresh_ok()
    base = fd_count(SRV.proc.pid)
    script = handshake_script()
    n = 0
    for k in range(len(script) + 1):
        for variant in ("fin", "rst", "unread"):
            c = conn()
            if variant != "unread":
                c.read_greeting()
            if k:
                c.send(script[:k])
            if variant == "rst":
                c.reset()
            else:
                c.close()
            n += 1
        if k % 25 == 0:
            fresh_ok()
    print(f"    {n} connections hung up at byte positions 0..{len(script)}")
    fresh_ok()
    wait_fds_back(base, "after the hang-ups")


def test_many_simultaneous_connections(count=300):
    fresh_ok()
    base = fd_count(SRV.proc.pid)
    conns = []
    try:
        for _ in range(count):
            conns.append(nr.Conn(SRV.host, SRV.port, timeout=20.0))
        greeted = closed = 0
        live = []
        for c in conns:
            try:
                c.read_greeting()
                greeted += 1
                live.append(c)
            except nr.Closed as e:
                check(not e.data, "a connection refused cleanly sends nothing", b"", e.data)
                closed += 1
        print(f"    {greeted} greeted, {closed} closed cleanly")
        check_eq(greeted, count, "connections greeted (max-connections is 1024 by default)")
        for c in live:
            c.send_client_flags(GOOD_CFLAGS)
            c.send_option(nr.OPT_GO, nr.info_data(b"disk"))
        for c in live:
            g = nr.InfoResult(c.read_option_replies(nr.OPT_GO))
            check_eq(nr.rep_name(g.final), "REP_ACK", "GO on one of the simultaneous connections")
        for i, c in enumerate(live):
            c.send_request(nr.CMD_READ, 0, 4096, cookie=struct.pack(">Q", i))
        for i, c in enumerate(live):
            r = c.read_reply()
            check(r.error == 0 and r.data == DISK_PATTERN and r.cookie == struct.pack(">Q", i),
                  f"READ on simultaneous connection {i}", "error 0, pattern", r)
    finally:
        for c in conns:
            c.close()
    fresh_ok()
    wait_fds_back(base, f"after closing {count} connections")


def test_handshake_timeout():
    with blockd(["name=disk,backend=memory,size=1MiB"], extra=["--handshake-timeout", "1"]) as srv:
        fresh_ok(srv)
        t0 = time.monotonic()
        idle = {}
        c = nr.Conn(srv.host, srv.port)
        idle["connected, greeting never read"] = (c, 18)
        c = nr.Conn(srv.host, srv.port)
        c.read_greeting()
        idle["greeted, no client flags"] = (c, 0)
        c = start(srv=srv)
        idle["client flags sent, no option"] = (c, 0)
        c = start(srv=srv)
        c.send(nr.option_bytes(nr.OPT_GO, nr.info_data(b"disk"))[:13])
        idle["half an option header"] = (c, 0)
        c = start(srv=srv)
        c.send(nr.option_bytes(nr.OPT_GO, nr.info_data(b"disk"))[:-3])
        idle["option data short by 3 bytes"] = (c, 0)
        c = start(srv=srv)
        expect_single(c, nr.OPT_STRUCTURED_REPLY, b"", nr.REP_ACK, "STRUCTURED_REPLY")
        idle["after one good option"] = (c, 0)
        # A session that reaches transmission must NOT be subject to the handshake timeout.
        busy = nr.negotiate(srv.host, srv.port, b"disk")
        results = {}
        for what, (c, allowed) in idle.items():
            closed, data = c.wait_closed(max(0.1, t0 + 6 - time.monotonic()))
            results[what] = (closed, time.monotonic() - t0, data)
            c.close()
        for what, (closed, when, data) in results.items():
            check(closed, f"idle handshake '{what}' closed after --handshake-timeout 1", "closed within 6s",
                  f"still open after {when:.1f}s")
            check(len(data) == idle[what][1], f"idle handshake '{what}': nothing sent before closing",
                  f"{idle[what][1]} bytes", data.hex())
        first = min(w for _, w, _ in results.values())
        check(first >= 0.5, "handshakes are not closed long before the timeout", ">= 0.5s", f"{first:.2f}s")
        time.sleep(max(0, t0 + 2.5 - time.monotonic()))
        r = busy.request(nr.CMD_READ, 0, 4096)
        check(r.error == 0, "a session in transmission phase outlives the handshake timeout", 0, r)
        busy.close()
        fresh_ok(srv)


CASES = [
    test_greeting_flags,
    test_unknown_client_flags_close,
    test_no_fixed_newstyle_export_name,
    test_unknown_option_unsup,
    test_option_64k_data_is_read,
    test_absurd_option_length_closes,
    test_bad_option_magic_closes,
    test_list_with_data_invalid,
    test_list_lists_volumes,
    test_structured_reply_with_data_invalid,
    test_set_meta_context_before_structured_reply_invalid,
    test_meta_context_base_allocation,
    test_meta_context_unknown_namespace_ignored,
    test_meta_context_malformed_invalid,
    test_go_name_length_mismatch_invalid,
    test_info_and_go_identical,
    test_go_unknown_export,
    test_export_name_length_limits,
    test_export_name_unknown_closes,
    test_export_name_zeroes,
    test_abort,
    test_starttls_unsup,
    test_hangup_at_every_byte,
    test_many_simultaneous_connections,
    test_handshake_timeout,
]


def main():
    global SRV, TMP
    if not os.access(fx.blockd_bin(), os.X_OK):
        fx.skip(f"{fx.blockd_bin()} not built")
    TMP = fx.temp_dir()
    specs = [
        f"name=disk,backend=memory,size={VOLUMES['disk'][0]}",
        f"name=second,path={os.path.join(TMP.name, 'second.img')},size={VOLUMES['second'][0]},"
        f"description={VOLUMES['second'][2].decode()}",
        f"name=ro,backend=memory,size={VOLUMES['ro'][0]},read-only",
    ]
    SRV = blockd(specs)
    watchdog = nr.start_watchdog(240, kill_started)
    try:
        SRV.start()
        with nr.negotiate(SRV.host, SRV.port, b"disk") as c:
            c.write(0, DISK_PATTERN)
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
