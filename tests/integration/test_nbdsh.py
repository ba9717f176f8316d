#!/usr/bin/env python3
"""python3-libnbd (what nbdsh runs) judges blockd's transmission phase.

Sections (each prints its checks):
  commands     every command and flag: pread, pread+DF (one chunk), pwrite+FUA, flush,
               trim (+FUA), zero (+FUA, +NO_HOLE stays allocated, +FAST_ZERO), cache,
               block_status (+REQ_ONE), TRIM/WRITE_ZEROES/BLOCK_STATUS larger than the
               32 MiB payload limit, disconnect (writes pipelined before DISC land)
  model        random read-after-write against an in-memory model (file and memory volume)
  pipelining   >=128 aio requests in flight, mixed sizes and commands, every reply checked;
               reads sent after a slow FLUSH are answered before it (out of order)
  multi-conn   a FLUSH on one connection makes writes replied on another stable
               (checked with cachestat(2) on the backing file), FUA likewise
  bad-input    strict mode off: every bad request libnbd can send gets the right errno
               and the same handle keeps working afterwards
  exports      unknown export, 4096-byte name (unknown -> clean error), 4097-byte name
               (refused; raw socket since libnbd refuses it locally), simple replies
  raw-wire     random cookies echoed byte for byte over 160 pipelined reads, unknown command
Set BLOCKD_TEST_SEED to repeat a run's random choices.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

nbd = fx.import_libnbd()
import ctypes  # noqa: E402
import errno  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402

KiB = 1 << 10
MiB = 1 << 20
FILE_SIZE = 64 * MiB
MEM_SIZE = 16 * MiB
RO_SIZE = 8 * MiB
RO_BYTE = 0xA5
CANARY = 60 * MiB          # "is the handle still fine" write/read lands here (disk)
SEED = int(os.environ.get("BLOCKD_TEST_SEED", str(int(time.time()))))

EINVAL, ENOSPC, EPERM = errno.EINVAL, errno.ENOSPC, errno.EPERM
EOVERFLOW, ENOTSUP, ENOENT = errno.EOVERFLOW, errno.ENOTSUP, errno.ENOENT


def ename(n):
    return errno.errorcode.get(n, str(n))


# --- libnbd helpers ----------------------------------------------------------
_handles = []


def connect(uri, meta=True, sr=True, reqbs=True, strict=None, name="h"):
    h = nbd.NBD()
    h.set_handle_name(name)
    if not sr:
        h.set_request_structured_replies(False)
    if not reqbs:
        h.set_request_block_size(False)
    if meta:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(uri)
    if strict is not None:
        h.set_strict_mode(strict)
    _handles.append(h)
    return h


def close(h):
    try:
        h.shutdown()
    except nbd.Error:
        pass


def wait(h, cookie, what, timeout=20.0):
    """Wait (bounded) for one aio command; raises nbd.Error if the server failed it."""
    end = time.monotonic() + timeout
    while not h.aio_command_completed(cookie):
        if time.monotonic() > end:
            raise fx.TestFailure(f"{what}: no reply within {timeout}s")
        h.poll(200)


def drain(h, what, timeout=60.0):
    end = time.monotonic() + timeout
    while h.aio_in_flight() > 0:
        if time.monotonic() > end:
            raise fx.TestFailure(f"{what}: {h.aio_in_flight()} requests unanswered after {timeout}s")
        h.poll(200)


# bounded synchronous commands (a server that never answers fails the check, not the run)
def b_pread(h, n, off, flags=0, what="pread"):
    buf = nbd.Buffer(n)
    wait(h, h.aio_pread(buf, off, flags=flags), what)
    return bytes(buf.to_bytearray())


def b_pwrite(h, data, off, flags=0, what="pwrite"):
    wait(h, h.aio_pwrite(data, off, flags=flags), what)


def b_trim(h, n, off, flags=0, what="trim"):
    wait(h, h.aio_trim(n, off, flags=flags), what)


def b_zero(h, n, off, flags=0, what="zero"):
    wait(h, h.aio_zero(n, off, flags=flags), what)


def b_cache(h, n, off, flags=0, what="cache"):
    wait(h, h.aio_cache(n, off, flags=flags), what)


def b_flush(h, flags=0, what="flush"):
    wait(h, h.aio_flush(flags=flags), what)


def b_block_status(h, n, off, flags=0, what="block_status"):
    got = []

    def extent(metacontext, offset, entries, err):
        got.append((metacontext, offset, list(entries)))
        return 0
    wait(h, h.aio_block_status(n, off, extent, flags=flags), what)
    return got


def expect_error(c, what, fn, allowed):
    allowed = set(allowed)
    want = "/".join(ename(e) for e in sorted(allowed))
    try:
        fn()
    except nbd.Error as e:
        return c.ok(e.errnum in allowed, f"{what} -> {want}",
                    f"got errno {e.errnum} ({ename(e.errnum)}): {e.string}")
    return c.ok(False, f"{what} -> {want}", "the request succeeded")


def expect_reply(c, what, fn):
    """The request gets some reply (success or any error) and the connection survives."""
    try:
        fn()
        return c.ok(True, f"{what} -> a reply (success)")
    except nbd.Error as e:
        ok = e.errnum not in (errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE, errno.ESHUTDOWN)
        return c.ok(ok, f"{what} -> a reply (error {ename(e.errnum)})", e.string)


def alive(c, h, what, writable=True, ro_expect=None):
    """The same handle still works: a fresh write+read (or read of known data)."""
    try:
        if writable:
            data = os.urandom(4096)
            b_pwrite(h, data, CANARY, what=f"canary write after {what}")
            back = b_pread(h, 4096, CANARY, what=f"canary read after {what}")
            return c.ok(back == data, f"  ...handle still works after {what}",
                        "read-back differs from written canary")
        back = b_pread(h, 4096, 0, what=f"read after {what}")
        return c.ok(back == ro_expect, f"  ...handle still works after {what}", "unexpected data")
    except nbd.Error as e:
        return c.ok(False, f"  ...handle still works after {what}", e.string)


# --- cachestat(2): is a file range dirty in the page cache? -----------------
class _CacheStat(ctypes.Structure):
    _fields_ = [("nr_cache", ctypes.c_uint64), ("nr_dirty", ctypes.c_uint64),
                ("nr_writeback", ctypes.c_uint64), ("nr_evicted", ctypes.c_uint64),
                ("nr_recently_evicted", ctypes.c_uint64)]


class _CacheStatRange(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
SYS_cachestat = 451  # x86_64 and aarch64


def fs_type(path):
    """Filesystem type of the mount holding path (longest mount-point prefix)."""
    path, best, typ = os.path.realpath(path), "", "?"
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            mnt = fields[1].replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, typ = mnt, fields[2]
    return typ


def cachestat(path, off, length):
    """(dirty, writeback) pages of the range, or None if cachestat is unavailable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        rng, cs = _CacheStatRange(off, length), _CacheStat()
        r = _libc.syscall(ctypes.c_long(SYS_cachestat), ctypes.c_int(fd), ctypes.byref(rng),
                          ctypes.byref(cs), ctypes.c_uint(0))
        if r != 0:
            return None
        return cs.nr_dirty, cs.nr_writeback
    finally:
        os.close(fd)


# =============================================================================
def sec_commands(c, b, disk_path):
    print("\n== commands and flags ==")
    h = connect(b.uri("disk"), name="cmds")
    c.eq(h.get_size(), FILE_SIZE, "get_size")
    c.ok(h.get_structured_replies_negotiated(), "structured replies negotiated")
    c.ok(h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION), "base:allocation negotiated")
    for flag in ("can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_cache",
                 "can_df", "can_multi_conn"):
        c.ok(getattr(h, flag)(), flag)
    c.ok(not h.is_read_only(), "not read-only")
    c.eq(h.get_block_size(nbd.SIZE_MINIMUM), 512, "block size minimum")
    c.eq(h.get_block_size(nbd.SIZE_PREFERRED), 4096, "block size preferred")
    c.eq(h.get_block_size(nbd.SIZE_MAXIMUM), 32 * MiB, "block size maximum")

    # pwrite / pread and the backing file agrees
    data = os.urandom(1 * MiB)
    h.pwrite(data, 4 * MiB)
    c.ok(h.pread(len(data), 4 * MiB) == data, "pwrite 1MiB then pread returns the same bytes")
    with open(disk_path, "rb") as f:
        f.seek(4 * MiB)
        c.ok(f.read(len(data)) == data, "the backing file holds the written bytes at the offset")
    data = os.urandom(4096)
    h.pwrite(data, 3 * MiB + 512, nbd.CMD_FLAG_FUA)
    c.ok(h.pread(4096, 3 * MiB + 512) == data, "pwrite with FUA (512-aligned offset) reads back")
    h.flush()
    c.ok(True, "flush")
    h.cache(2 * MiB, 4 * MiB)
    c.ok(True, "cache")

    # pread over data + hole, with and without DF
    base = 8 * MiB           # fresh area: 4 KiB data at base+8KiB, rest hole
    data = os.urandom(4096)
    h.pwrite(data, base + 8 * KiB)
    expect = bytes(8 * KiB) + data + bytes(52 * KiB)
    chunks = []

    def chunk(subbuf, offset, status, err):
        chunks.append((offset, len(subbuf), status))
        return 0
    got = h.pread_structured(64 * KiB, base, chunk)
    c.ok(bytes(got) == expect, "pread over hole+data+hole returns the right bytes")
    content = sorted((o, n) for o, n, s in chunks if s in (nbd.READ_DATA, nbd.READ_HOLE))
    pos, tidy = base, True
    for o, n in content:
        tidy &= (o == pos and n > 0)
        pos = o + n
    c.ok(tidy and pos == base + 64 * KiB, "read chunks tile the request without gaps or overlaps",
         f"chunks={chunks}")
    chunks.clear()
    got = h.pread_structured(64 * KiB, base, chunk, nbd.CMD_FLAG_DF)
    c.ok(bytes(got) == expect, "pread with DF returns the right bytes")
    content = [(o, n, s) for o, n, s in chunks if s in (nbd.READ_DATA, nbd.READ_HOLE)]
    c.eq(len(content), 1, "pread with DF: exactly one content chunk")
    if len(content) == 1:
        c.eq(content[0], (base, 64 * KiB, nbd.READ_DATA),
             "pread with DF over data+hole: one OFFSET_DATA chunk covering the request")

    # trim: neighbours untouched
    t = 12 * MiB
    a, m, z = os.urandom(64 * KiB), os.urandom(64 * KiB), os.urandom(64 * KiB)
    h.pwrite(a + m + z, t)
    h.trim(64 * KiB, t + 64 * KiB)
    c.ok(True, "trim")
    h.trim(4096, t + 64 * KiB, nbd.CMD_FLAG_FUA)
    c.ok(True, "trim with FUA")
    c.ok(h.pread(64 * KiB, t) == a and h.pread(64 * KiB, t + 128 * KiB) == z,
         "trim leaves the neighbouring blocks intact")

    # zero, zero+NO_HOLE (must stay allocated), zero+FAST_ZERO (zeroes or ENOTSUP)
    zoff = 16 * MiB
    h.pwrite(os.urandom(1 * MiB), zoff)
    h.zero(1 * MiB, zoff)
    c.ok(h.pread(1 * MiB, zoff) == bytes(1 * MiB), "zero: the range reads back as zeroes")

    h.pwrite(os.urandom(8192), zoff)
    h.zero(8192, zoff, nbd.CMD_FLAG_FUA)
    c.ok(h.pread(8192, zoff) == bytes(8192), "zero with FUA: reads back as zeroes")

    zoff = 18 * MiB
    h.pwrite(os.urandom(1 * MiB), zoff)
    h.flush()
    before = os.stat(disk_path).st_blocks
    h.zero(1 * MiB, zoff, nbd.CMD_FLAG_NO_HOLE)
    h.flush()
    after = os.stat(disk_path).st_blocks
    c.ok(h.pread(1 * MiB, zoff) == bytes(1 * MiB), "zero with NO_HOLE: reads back as zeroes")
    c.ok((before - after) * 512 < 512 * KiB, "zero with NO_HOLE does not deallocate the range",
         f"st_blocks {before} -> {after}")
    neighbour = os.urandom(4096)
    h.pwrite(neighbour, zoff + 1 * MiB)
    h.zero(4096, zoff + 1 * MiB - 4096, nbd.CMD_FLAG_NO_HOLE)
    c.ok(h.pread(4096, zoff + 1 * MiB) == neighbour, "zero with NO_HOLE leaves the next block alone")

    zoff = 20 * MiB
    h.pwrite(os.urandom(1 * MiB), zoff)
    try:
        h.zero(1 * MiB, zoff, nbd.CMD_FLAG_FAST_ZERO)
        c.ok(h.pread(1 * MiB, zoff) == bytes(1 * MiB), "zero with FAST_ZERO succeeded and reads zero")
    except nbd.Error as e:
        c.eq(ename(e.errnum), "ENOTSUP", "zero with FAST_ZERO: if it fails, then with ENOTSUP")
        alive(c, h, "FAST_ZERO refusal")
    try:
        h.zero(64 * KiB, zoff, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE)
        c.ok(h.pread(64 * KiB, zoff) == bytes(64 * KiB), "zero with FAST_ZERO|NO_HOLE reads zero")
    except nbd.Error as e:
        c.eq(ename(e.errnum), "ENOTSUP", "zero with FAST_ZERO|NO_HOLE: if it fails, then ENOTSUP")

    # block status, with and without REQ_ONE, on a fresh area:
    #   [bs, bs+64K) hole, [bs+64K, bs+128K) data, [bs+128K, bs+2M) hole
    bs = 40 * MiB
    h.pwrite(os.urandom(64 * KiB), bs + 64 * KiB)
    h.flush()
    got = []

    def extent(metacontext, offset, entries, err):
        got.append((metacontext, offset, list(entries)))
        return 0
    h.block_status(2 * MiB, bs, extent)
    c.eq([g[0] for g in got], ["base:allocation"], "block_status: one reply for base:allocation")
    ext = []
    if got:
        c.eq(got[0][1], bs, "block_status: extents start at the requested offset")
        e = got[0][2]
        pos = bs
        for i in range(0, len(e), 2):
            ext.append((pos, e[i], e[i + 1]))
            pos += e[i]
        c.ok(all(n > 0 for _, n, _ in ext), "block_status: all extent lengths > 0", f"{ext}")

    def state(off):
        for o, n, f in ext:
            if o <= off < o + n:
                return f
        return None
    c.eq(state(bs), 3, "block_status: unwritten start is hole|zero")
    c.eq(state(bs + 64 * KiB), 0, "block_status: written block is data")
    c.eq(state(bs + 128 * KiB - 1), 0, "block_status: end of written range is data")
    c.eq(state(bs + 128 * KiB), 3, "block_status: after the written range: hole|zero")
    c.ok(all(o < bs + 2 * MiB for o, _, _ in ext),
         "block_status: no descriptor starts beyond the requested range", f"{ext}")

    for off, want in ((bs, 3), (bs + 64 * KiB, 0)):
        got.clear()
        h.block_status(1 * MiB, off, extent, nbd.CMD_FLAG_REQ_ONE)
        entries = got[0][2] if got else []
        c.eq(len(entries), 2, f"block_status REQ_ONE at +{(off - bs) // KiB}KiB: exactly one extent")
        if len(entries) == 2:
            c.ok(0 < entries[0] <= 64 * KiB, "block_status REQ_ONE: length within the request "
                 "and the uniform region", f"length={entries[0]}")
            c.eq(entries[1], want, "block_status REQ_ONE: flags")

    # the kernel sends TRIM/WRITE_ZEROES far larger than the 32 MiB payload limit (DESIGN §2)
    big = 48 * MiB
    guard_lo, guard_hi = os.urandom(4096), os.urandom(4096)
    h.pwrite(guard_lo, 4 * MiB - 4096)
    h.pwrite(guard_hi, 4 * MiB + big)
    h.pwrite(os.urandom(1 * MiB), 8 * MiB + 512 * KiB)
    try:
        h.zero(big, 4 * MiB)
        ok = all(h.pread(8 * MiB, 4 * MiB + o) == bytes(8 * MiB) for o in range(0, big, 8 * MiB))
        c.ok(ok, "write_zeroes of 48 MiB (> maximum payload) succeeds and reads back zero")
    except nbd.Error as e:
        c.ok(False, "write_zeroes of 48 MiB (> maximum payload) succeeds", e.string)
    try:
        h.trim(big, 4 * MiB)
        c.ok(True, "trim of 48 MiB (> maximum payload) succeeds")
    except nbd.Error as e:
        c.ok(False, "trim of 48 MiB (> maximum payload) succeeds", e.string)
    c.ok(h.pread(4096, 4 * MiB - 4096) == guard_lo and h.pread(4096, 4 * MiB + big) == guard_hi,
         "  ...the blocks right before and after the zeroed/trimmed range are intact")
    try:
        seen = []
        h.block_status(big, 4 * MiB, lambda m, o, e, err: seen.append(sum(e[0::2])) or 0)
        c.ok(len(seen) == 1 and seen[0] > 0, "block_status over 48 MiB (> maximum payload) succeeds",
             f"{seen}")
    except nbd.Error as e:
        c.ok(False, "block_status over 48 MiB (> maximum payload) succeeds", e.string)

    # disconnect: outstanding writes are handled before the server closes
    writes = {}
    for i in range(64):
        d = os.urandom(4096)
        writes[24 * MiB + i * 8192] = d
        h.aio_pwrite(d, 24 * MiB + i * 8192)
    h.shutdown()
    c.ok(h.aio_is_closed(), "disconnect (NBD_CMD_DISC): the connection is closed")
    h2 = connect(b.uri("disk"), name="after-disc")
    bad = [o for o, d in writes.items() if h2.pread(4096, o) != d]
    c.ok(not bad, "all 64 writes pipelined before NBD_CMD_DISC were handled",
         f"{len(bad)} missing, first at {bad[:3]}")
    close(h2)


def sec_model(c, b):
    print("\n== read-after-write against a model ==")
    rnd = random.Random(SEED)
    for vol, size in (("disk", 32 * MiB), ("mem", MEM_SIZE)):
        h = connect(b.uri(vol), name=f"model-{vol}")
        base = 0 if vol == "mem" else 28 * MiB   # disk: [28MiB, 60MiB) is ours
        if vol == "disk":
            h.zero(size, base)
        model = bytearray(size)
        ops = {"write": 0, "fua": 0, "zero": 0, "nohole": 0, "trim+write": 0, "read": 0}
        mismatches = []
        for step in range(400):
            ln = rnd.choice([512, 4096, 8192, 65536, 262144, rnd.randrange(1, 512) * 512])
            off = rnd.randrange(0, (size - ln) // 512 + 1) * 512
            op = rnd.choice(list(ops))
            ops[op] += 1
            if op in ("write", "fua", "trim+write"):
                if op == "trim+write":
                    h.trim(ln, base + off)
                d = rnd.randbytes(ln)
                h.pwrite(d, base + off, nbd.CMD_FLAG_FUA if op == "fua" else 0)
                model[off:off + ln] = d
            elif op in ("zero", "nohole"):
                h.zero(ln, base + off, nbd.CMD_FLAG_NO_HOLE if op == "nohole" else 0)
                model[off:off + ln] = bytes(ln)
            else:
                if h.pread(ln, base + off) != model[off:off + ln]:
                    mismatches.append((step, off, ln))
        for off in range(0, size, 4 * MiB):
            n = min(4 * MiB, size - off)
            if h.pread(n, base + off) != model[off:off + n]:
                mismatches.append(("final", off, n))
        c.ok(not mismatches, f"{vol}: 400 random ops {ops} then a full read match the model "
             f"(seed {SEED})", f"mismatches at {mismatches[:5]}")
        close(h)


def sec_pipelining(c, b):
    print("\n== pipelining: many requests in flight, replies in any order ==")
    h = connect(b.uri("disk"), name="pipe")
    rnd = random.Random(SEED + 1)
    region = 0                      # [0, 32MiB) of disk, 128 KiB slots
    n = 256
    slots = []
    for i in range(n):
        ln = rnd.choice([512, 4096, 12288, 65536, 131072])
        slots.append((region + i * 128 * KiB, os.urandom(ln)))
    expect = bytearray(33 * MiB)     # the last slot's read goes 512 bytes past 32 MiB
    for off, d in slots:
        expect[off:off + len(d)] = d
    h.zero(33 * MiB, region)

    done, errors = [], []

    def completion(tag):
        def cb(err):
            done.append(tag)
            if err.value:
                errors.append((tag, err.value))
            return 1
        return cb

    for i, (off, d) in enumerate(slots):
        h.aio_pwrite(d, off, completion(i))
    inflight = h.aio_in_flight()
    c.ok(inflight >= 128, f"{n} aio writes issued without waiting: {inflight} in flight (>=128)")
    drain(h, "pipelined writes")
    c.eq(len(done), n, "every pipelined write got a reply")
    c.eq(errors, [], "no pipelined write failed")
    ooo = sum(1 for i, t in enumerate(done) if t != i)
    print(f"     (writes: {ooo} of {n} completions out of submission order)")

    # reads of every slot in shuffled order, plus big reads, all in flight at once
    done.clear()
    errors.clear()
    order = list(range(n))
    rnd.shuffle(order)
    bufs = {}
    big = [(0, 16 * MiB), (16 * MiB, 16 * MiB), (8 * MiB, 8 * MiB)]
    for j, (off, ln) in enumerate(big):
        buf = nbd.Buffer(ln)
        bufs[("big", j)] = (buf, off, ln)
        h.aio_pread(buf, off, completion(("big", j)))
    for i in order:
        off, d = slots[i]
        buf = nbd.Buffer(len(d) + 512)   # a little beyond the write: must be zero
        bufs[i] = (buf, off, len(d) + 512)
        if i % 3 == 0:   # every third read with DF (needs the structured-read call)
            h.aio_pread_structured(buf, off, lambda *a: 0, completion(i), flags=nbd.CMD_FLAG_DF)
        else:
            h.aio_pread(buf, off, completion(i))
    inflight = h.aio_in_flight()
    c.ok(inflight >= 128, f"{len(bufs)} aio reads issued without waiting: {inflight} in flight")
    drain(h, "pipelined reads")
    c.eq(len(done), len(bufs), "every pipelined read got a reply")
    c.eq(errors, [], "no pipelined read failed")
    wrong = [k for k, (buf, off, ln) in bufs.items()
             if bytes(buf.to_bytearray()) != expect[off:off + ln]]
    c.ok(not wrong, "every pipelined read returned the data of its own offset",
         f"{len(wrong)} wrong, e.g. {wrong[:5]}")
    first_small = next((k for k, t in enumerate(done) if not isinstance(t, tuple)), None)
    big_last = max(k for k, t in enumerate(done) if isinstance(t, tuple))
    print(f"     (reads: first small read completed at position {first_small}, "
          f"last 16MiB read at {big_last} of {len(done)}; "
          f"{'out-of-order replies observed' if big_last > 2 else 'replies came in order'})")

    # a mixed batch: writes, reads, zero, trim, cache, flush, block_status all in flight
    done.clear()
    errors.clear()
    mixed = 0
    writes2 = {}
    for i in range(200):
        off = 32 * MiB + i * 64 * KiB
        kind = i % 7
        if kind in (0, 1, 2):
            d = os.urandom(4096 * (1 + i % 4))
            writes2[off] = d
            h.aio_pwrite(d, off, completion(("w", i)),
                         flags=nbd.CMD_FLAG_FUA if kind == 2 else 0)
        elif kind == 3:
            h.aio_zero(8192, off, completion(("z", i)))
        elif kind == 4:
            h.aio_trim(8192, off, completion(("t", i)))
        elif kind == 5:
            h.aio_cache(65536, off, completion(("c", i)))
        else:
            h.aio_flush(completion(("f", i)))
        mixed += 1
    h.aio_block_status(4 * MiB, 32 * MiB, lambda *a: 0, completion(("bs", 0)))
    mixed += 1
    c.ok(h.aio_in_flight() >= 128, f"mixed batch: {h.aio_in_flight()} requests in flight")
    drain(h, "mixed batch")
    c.eq(len(done), mixed, "every request of the mixed batch got a reply")
    c.eq(errors, [], "no request of the mixed batch failed")
    wrong = [o for o, d in writes2.items() if h.pread(len(d), o) != d]
    c.ok(not wrong, "writes of the mixed batch read back", f"wrong at {wrong[:5]}")

    # out of order for real: a slow FLUSH (32 MiB dirty) must not hold back reads sent after it
    orders = []
    for attempt in range(3):
        for i in range(8):
            h.pwrite(os.urandom(4 * MiB), i * 4 * MiB)
        done.clear()
        errors.clear()
        h.aio_flush(completion("flush"))
        rbufs = [nbd.Buffer(4096) for _ in range(16)]
        for i, buf in enumerate(rbufs):
            h.aio_pread(buf, 40 * MiB + i * 4096, completion(i))
        drain(h, "flush followed by reads")
        orders.append(done.index("flush") if "flush" in done else None)
        if errors or done.index("flush") > 0:
            break
    c.eq(errors, [], "flush + 16 reads: no errors")
    c.ok(any(o for o in orders), "replies out of order: reads sent after a slow FLUSH are "
         "answered before it (requests are processed concurrently)",
         f"the FLUSH reply came first in all {len(orders)} attempts")
    close(h)


def sec_multiconn(c, b, disk_path):
    print("\n== multi-conn: FLUSH/FUA cover writes from any connection ==")
    h1 = connect(b.uri("disk"), name="mc1")
    h2 = connect(b.uri("disk"), name="mc2")
    h3 = connect(b.uri("disk"), name="mc3")
    c.ok(h1.can_multi_conn() and h2.can_multi_conn(), "can_multi_conn on every connection")

    d1, d2 = os.urandom(1 * MiB), os.urandom(1 * MiB)
    o1, o2 = 44 * MiB, 46 * MiB
    h1.pwrite(d1, o1)
    h2.pwrite(d2, o2)
    c.ok(h3.pread(1 * MiB, o1) == d1 and h1.pread(1 * MiB, o2) == d2,
         "a write replied on one connection is visible on the others")
    cs1, cs2 = cachestat(disk_path, o1, 1 * MiB), cachestat(disk_path, o2, 1 * MiB)
    fstype = fs_type(disk_path)
    if cs1 is None or fstype in ("tmpfs", "ramfs"):
        print(f"     (cachestat(2) unavailable or backing file on {fstype}: cannot observe "
              "durability; checking visibility only)")
        h3.flush()
        c.ok(True, "flush on a third connection")
    else:
        print(f"     before flush: dirty/writeback pages conn1={cs1} conn2={cs2}")
        dirty_before = cs1[0] + cs2[0]
        h3.flush()
        a1, a2 = cachestat(disk_path, o1, 1 * MiB), cachestat(disk_path, o2, 1 * MiB)
        print(f"     after flush on conn3: conn1 range={a1} conn2 range={a2}")
        if dirty_before == 0:
            print("     (writes were not dirty in the page cache before the flush "
                  "(O_DIRECT or early writeback): flush coverage not observable)")
        c.ok(a1 == (0, 0) and a2 == (0, 0),
             "FLUSH on connection 3 leaves no dirty/writeback pages of writes from 1 and 2",
             f"after flush: {a1}, {a2}")

        d3 = os.urandom(1 * MiB)
        o3 = 48 * MiB
        h1.pwrite(d3, o3, nbd.CMD_FLAG_FUA)
        a3 = cachestat(disk_path, o3, 1 * MiB)
        c.eq(a3, (0, 0), "a FUA write is stable (no dirty/writeback pages) when it is replied")
    for h in (h1, h2, h3):
        close(h)


def sec_bad_input(c, b, ro_path):
    print("\n== bad input with strict mode off: right errno, connection lives ==")
    h = connect(b.uri("disk"), strict=0, name="bad")
    size = h.get_size()
    c.eq(h.get_strict_mode(), 0, "strict mode disabled")
    c.eq(h.get_block_size(nbd.SIZE_MINIMUM), 512, "block sizes were negotiated (min 512)")

    end_pattern = os.urandom(4096)
    b_pwrite(h, end_pattern, size - 4096)

    expect_error(c, "read at end of export", lambda: b_pread(h, 4096, size), {EINVAL})
    alive(c, h, "read past end")
    expect_error(c, "read straddling the end", lambda: b_pread(h, 8192, size - 4096), {EINVAL})
    alive(c, h, "straddling read")
    expect_error(c, "write at end of export", lambda: b_pwrite(h, os.urandom(4096), size), {ENOSPC})
    alive(c, h, "write past end")
    expect_error(c, "write straddling the end",
                 lambda: b_pwrite(h, os.urandom(8192), size - 4096), {ENOSPC})
    c.ok(b_pread(h, 4096, size - 4096) == end_pattern,
         "  ...the straddling write changed nothing inside the export")
    alive(c, h, "straddling write")
    expect_error(c, "trim past end", lambda: b_trim(h, 8192, size - 4096), {EINVAL})
    alive(c, h, "trim past end")
    expect_error(c, "write_zeroes past end", lambda: b_zero(h, 8192, size - 4096), {ENOSPC, EINVAL})
    c.ok(b_pread(h, 4096, size - 4096) == end_pattern,
         "  ...the failed write_zeroes changed nothing inside the export")
    alive(c, h, "zero past end")
    expect_error(c, "cache past end", lambda: b_cache(h, 8192, size - 4096), {EINVAL})
    alive(c, h, "cache past end")
    expect_error(c, "block_status past end", lambda: b_block_status(h, 8192, size), {EINVAL})
    alive(c, h, "block_status past end")

    top = 2 ** 64 - 2048
    expect_error(c, "read with offset+length overflowing 64 bits",
                 lambda: b_pread(h, 4096, top), {EINVAL})
    alive(c, h, "overflowing read")
    expect_error(c, "write with offset+length overflowing 64 bits",
                 lambda: b_pwrite(h, os.urandom(4096), top), {EINVAL, ENOSPC})
    alive(c, h, "overflowing write")
    expect_error(c, "trim with offset+length overflowing 64 bits",
                 lambda: b_trim(h, 4096, top), {EINVAL})
    alive(c, h, "overflowing trim")
    expect_error(c, "read at offset 2^63", lambda: b_pread(h, 4096, 2 ** 63), {EINVAL})
    alive(c, h, "read at 2^63")

    head = os.urandom(8192)
    b_pwrite(h, head, 0)
    expect_error(c, "unaligned read offset (1)", lambda: b_pread(h, 512, 1), {EINVAL})
    alive(c, h, "unaligned read offset")
    expect_error(c, "unaligned read length (1000)", lambda: b_pread(h, 1000, 0), {EINVAL})
    alive(c, h, "unaligned read length")
    expect_error(c, "unaligned write offset (100)", lambda: b_pwrite(h, os.urandom(512), 100),
                 {EINVAL})
    expect_error(c, "unaligned write length (700)", lambda: b_pwrite(h, os.urandom(700), 0),
                 {EINVAL})
    c.ok(b_pread(h, 8192, 0) == head, "  ...the refused unaligned writes changed nothing")
    alive(c, h, "unaligned writes")
    expect_error(c, "unaligned trim", lambda: b_trim(h, 4096, 100), {EINVAL})
    expect_error(c, "unaligned write_zeroes", lambda: b_zero(h, 100, 0), {EINVAL})
    c.ok(b_pread(h, 8192, 0) == head, "  ...the refused unaligned trim/zero changed nothing")
    alive(c, h, "unaligned trim/zero")

    for what, fn in (("zero-length read", lambda: b_pread(h, 0, 4096)),
                     ("zero-length write", lambda: b_pwrite(h, b"", 4096)),
                     ("zero-length trim", lambda: b_trim(h, 0, 4096)),
                     ("zero-length write_zeroes", lambda: b_zero(h, 0, 4096)),
                     ("zero-length cache", lambda: b_cache(h, 0, 4096)),
                     ("zero-length block_status", lambda: b_block_status(h, 0, 4096))):
        expect_reply(c, what, fn)
        alive(c, h, what)

    expect_error(c, "read with unknown flag 0x100", lambda: b_pread(h, 4096, 0, 0x100), {EINVAL})
    alive(c, h, "unknown read flag")
    expect_error(c, "read with unknown flag 0x80", lambda: b_pread(h, 4096, 0, 0x80), {EINVAL})
    alive(c, h, "unknown read flag 0x80")
    expect_error(c, "write with unknown flag 0x8000",
                 lambda: b_pwrite(h, os.urandom(4096), 0, 0x8000), {EINVAL})
    c.ok(b_pread(h, 8192, 0) == head, "  ...the refused write changed nothing")
    alive(c, h, "unknown write flag")
    expect_error(c, "flush with unknown flag 0x200", lambda: b_flush(h, 0x200), {EINVAL})
    alive(c, h, "unknown flush flag")
    expect_error(c, "trim with unknown flag 0x400", lambda: b_trim(h, 4096, 0, 0x400), {EINVAL})
    alive(c, h, "unknown trim flag")
    expect_error(c, "write_zeroes with unknown flag 0x1000",
                 lambda: b_zero(h, 4096, 0, 0x1000), {EINVAL})
    alive(c, h, "unknown zero flag")
    expect_error(c, "block_status with unknown flag 0x800",
                 lambda: b_block_status(h, 4096, 0, 0x800), {EINVAL})
    alive(c, h, "unknown block_status flag")

    expect_error(c, "read of 32MiB+4KiB (over the maximum payload)",
                 lambda: b_pread(h, 32 * MiB + 4096, 0), {EINVAL, EOVERFLOW})
    alive(c, h, "over-32MiB read")
    c.ok(len(b_pread(h, 32 * MiB, 0)) == 32 * MiB, "a read of exactly 32MiB succeeds")
    expect_error(c, "write of 32MiB+4KiB (payload drained)",
                 lambda: b_pwrite(h, bytes(32 * MiB + 4096), 0), {EINVAL})
    c.ok(b_pread(h, 8192, 0) == head, "  ...the refused oversized write changed nothing")
    alive(c, h, "over-32MiB write")
    close(h)

    # unaligned I/O without block-size negotiation is accepted (contract)
    h = connect(b.uri("disk"), reqbs=False, strict=0, name="noblocksize")
    c.ok(not h.get_request_block_size(), "client without NBD_INFO_BLOCK_SIZE request")
    try:
        d = os.urandom(700)
        b_pwrite(h, d, 4 * MiB + 100)
        c.ok(b_pread(h, 700, 4 * MiB + 100) == d,
             "unaligned write/read works when block sizes were not requested")
    except nbd.Error as e:
        c.ok(False, "unaligned write/read works when block sizes were not requested", e.string)
    alive(c, h, "unaligned I/O without block-size request")
    close(h)

    # read-only export
    ro_data = bytes([RO_BYTE]) * 4096
    h = connect(b.uri("ro"), strict=0, name="ro")
    c.ok(h.is_read_only(), "ro: is_read_only")
    expect_error(c, "ro: write", lambda: b_pwrite(h, os.urandom(4096), 0), {EPERM})
    alive(c, h, "write to read-only", writable=False, ro_expect=ro_data)
    expect_error(c, "ro: write with FUA", lambda: b_pwrite(h, os.urandom(4096), 4096,
                                                             nbd.CMD_FLAG_FUA), {EPERM})
    expect_error(c, "ro: trim", lambda: b_trim(h, 4096, 0), {EPERM})
    alive(c, h, "trim on read-only", writable=False, ro_expect=ro_data)
    expect_error(c, "ro: write_zeroes", lambda: b_zero(h, 4096, 0), {EPERM})
    alive(c, h, "zero on read-only", writable=False, ro_expect=ro_data)
    try:
        b_cache(h, 1 * MiB, 0)
        c.ok(True, "ro: cache works")
        if h.can_flush():
            b_flush(h)
            c.ok(True, "ro: flush works (SEND_FLUSH is advertised)")
        got = b_block_status(h, 1 * MiB, 0)
        c.ok(got and got[0][2][1] == 0, "ro: block_status reports the written file as data",
             f"{got}")
    except nbd.Error as e:
        c.ok(False, "ro: cache/flush/block_status work", e.string)
    alive(c, h, "cache/flush/block_status on read-only", writable=False, ro_expect=ro_data)
    with open(ro_path, "rb") as f:
        c.ok(f.read() == bytes([RO_BYTE]) * RO_SIZE, "ro: the backing file is unchanged")
    close(h)

    # BLOCK_STATUS without meta context negotiation
    h = connect(b.uri("disk"), meta=False, strict=0, name="nometa")
    c.ok(not h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION), "no meta context negotiated")
    expect_error(c, "block_status without meta context", lambda: b_block_status(h, 4096, 0),
                 {EINVAL})
    alive(c, h, "block_status without meta context")
    close(h)

    # DF without structured replies; simple-reply errors keep the stream in sync
    h = connect(b.uri("disk"), sr=False, strict=0, name="simple")
    c.ok(not h.get_structured_replies_negotiated(), "structured replies not negotiated")
    expect_error(c, "read with DF without structured replies",
                 lambda: b_pread(h, 4096, 0, nbd.CMD_FLAG_DF), {EINVAL})
    alive(c, h, "DF without structured replies")
    expect_error(c, "block_status without structured replies",
                 lambda: b_block_status(h, 4096, 0), {EINVAL})
    alive(c, h, "block_status without structured replies")
    expect_error(c, "simple replies: read past end", lambda: b_pread(h, 4096, size), {EINVAL})
    alive(c, h, "read past end with simple replies")
    close(h)


# --- raw protocol (for what libnbd will not send) ---------------------------
NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
OPT_EXPORT_NAME, OPT_ABORT, OPT_INFO, OPT_GO = 1, 2, 6, 7
REP_ACK, REP_INFO = 1, 3
REP_ERR = {2 ** 31 + 1: "ERR_UNSUP", 2 ** 31 + 2: "ERR_POLICY", 2 ** 31 + 3: "ERR_INVALID",
           2 ** 31 + 4: "ERR_PLATFORM", 2 ** 31 + 5: "ERR_TLS_REQD", 2 ** 31 + 6: "ERR_UNKNOWN",
           2 ** 31 + 7: "ERR_SHUTDOWN", 2 ** 31 + 8: "ERR_BLOCK_SIZE_REQD", 2 ** 31 + 9: "ERR_TOO_BIG"}
REQUEST_MAGIC, SIMPLE_REPLY_MAGIC = 0x25609513, 0x67446698


class Raw:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        hello = self.recv(18)
        magic, opt, self.hflags = struct.unpack(">QQH", hello)
        if magic != NBDMAGIC or opt != IHAVEOPT:
            raise fx.TestFailure(f"raw: bad server greeting {hello!r}")
        self.s.sendall(struct.pack(">I", 3 if self.hflags & 2 else 1))  # FIXED_NEWSTYLE|NO_ZEROES

    def recv(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                raise EOFError(f"connection closed after {len(out)} of {n} bytes")
            out += chunk
        return out

    def option(self, opt, data):
        self.s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def reply(self):
        magic, opt, typ, ln = struct.unpack(">QIII", self.recv(20))
        if magic != REPLY_MAGIC:
            raise fx.TestFailure(f"raw: bad option reply magic {magic:#x}")
        return opt, typ, self.recv(ln)

    def go(self, opt, name):
        """Send GO/INFO; return ('ok', export_size) or ('error', name-of-reply)."""
        nb = name.encode()
        self.option(opt, struct.pack(">I", len(nb)) + nb + struct.pack(">H", 0))
        size = None
        while True:
            o, typ, data = self.reply()
            if typ == REP_INFO and len(data) >= 12 and struct.unpack(">H", data[:2])[0] == 0:
                size = struct.unpack(">Q", data[2:10])[0]
            elif typ == REP_ACK:
                return "ok", size
            elif typ in REP_ERR or typ & 2 ** 31:
                return "error", REP_ERR.get(typ, hex(typ))

    def request(self, typ, cookie, offset, length, flags=0, payload=b""):
        self.s.sendall(struct.pack(">IHH8sQI", REQUEST_MAGIC, flags, typ, cookie, offset, length)
                       + payload)

    def simple_reply(self):
        magic, err, cookie = struct.unpack(">II8s", self.recv(16))
        if magic != SIMPLE_REPLY_MAGIC:
            raise fx.TestFailure(f"raw: bad simple reply magic {magic:#x}")
        return err, cookie

    def closed_by_server(self, timeout=10):
        self.s.settimeout(timeout)
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def sec_exports(c, b):
    print("\n== export names ==")
    h = nbd.NBD()
    h.set_export_name("no-such-volume")
    try:
        h.connect_uri(b.uri("no-such-volume"))
        c.ok(False, "unknown export -> clean error", "connected")
    except nbd.Error as e:
        c.ok(e.errnum == ENOENT, "unknown export -> NBD_REP_ERR_UNKNOWN (ENOENT)",
             f"errno {ename(e.errnum)}: {e.string}")
    del h

    name4096 = "v" * 4096
    h = nbd.NBD()
    h.set_export_name(name4096)
    try:
        h.connect_tcp("127.0.0.1", str(b.port))
        c.ok(False, "4096-byte unknown export name -> unknown export", "connected")
    except nbd.Error as e:
        c.ok(e.errnum == ENOENT, "4096-byte unknown export name -> NBD_REP_ERR_UNKNOWN (ENOENT)",
             f"errno {ename(e.errnum)}: {e.string[:200]}")
    del h

    # opt mode: the failed GO leaves the option phase usable
    h = nbd.NBD()
    h.set_opt_mode(True)
    h.connect_tcp("127.0.0.1", str(b.port))
    h.set_export_name(name4096)
    expect_error(c, "opt_info with 4096-byte unknown name", h.opt_info, {ENOENT})
    if not c.ok(h.aio_is_negotiating(), "  ...the connection is still in option negotiation",
                f"state: {h.connection_state()}"):
        h = nbd.NBD()            # carry on with a fresh connection
        h.set_opt_mode(True)
        h.connect_tcp("127.0.0.1", str(b.port))
    h.set_export_name("disk")
    h.opt_info()
    c.eq(h.get_size(), FILE_SIZE, "opt_info 'disk' on the same connection afterwards")
    exports = []
    h.opt_list(lambda name, desc: exports.append(name) or 0)
    c.eq(sorted(exports), ["disk", "mem", "ro"], "opt_list")
    h.opt_go()
    c.ok(h.aio_is_ready(), "opt_go 'disk' after the failed attempts")
    alive(c, h, "opt mode negotiation")
    close(h)

    # 4097-byte name: libnbd refuses it locally, so speak the protocol directly
    name4097 = "w" * 4097
    for opt, label in ((OPT_GO, "GO"), (OPT_INFO, "INFO")):
        r = Raw(b.port)
        try:
            got = r.go(opt, name4097)
            c.eq(got, ("error", "ERR_INVALID"), f"raw {label} with a 4097-byte name -> ERR_INVALID")
            got = r.go(OPT_GO, "disk")
            c.eq(got, ("ok", FILE_SIZE), f"raw: GO 'disk' on the same connection after the "
                 f"refused {label} (stream in sync)")
        except (EOFError, OSError) as e:
            c.ok(False, f"raw {label} with a 4097-byte name -> ERR_INVALID", f"{e}")
        finally:
            r.close()
    for name, label in ((name4097, "4097-byte"), (name4096, "4096-byte unknown")):
        r = Raw(b.port)
        try:
            nb = name.encode()
            r.option(OPT_EXPORT_NAME, nb)
            c.ok(r.closed_by_server(), f"raw EXPORT_NAME with a {label} name -> connection closed")
        finally:
            r.close()

    # the error reply for a long unknown name must itself respect the 4096-byte string limit
    r = Raw(b.port)
    try:
        nb = name4096.encode()
        r.option(OPT_GO, struct.pack(">I", len(nb)) + nb + struct.pack(">H", 0))
        _, typ, data = r.reply()
        c.eq(REP_ERR.get(typ, hex(typ)), "ERR_UNKNOWN", "raw GO with a 4096-byte unknown name "
             "-> ERR_UNKNOWN")
        c.ok(len(data) <= 4096, "  ...its error message is at most 4096 bytes (spec: strings, "
             "including error messages, MUST be no longer than 4096 bytes)",
             f"message is {len(data)} bytes: {data[:40]!r}...{data[-20:]!r}")
    finally:
        r.close()

    # a short unknown name through raw GO: ERR_UNKNOWN
    r = Raw(b.port)
    try:
        c.eq(r.go(OPT_GO, "nope"), ("error", "ERR_UNKNOWN"), "raw GO 'nope' -> ERR_UNKNOWN")
        c.eq(r.go(OPT_GO, ""), ("ok", FILE_SIZE), "raw GO '' -> first volume (disk)")
    finally:
        r.close()

    # handshake with simple replies only
    h = connect(b.uri("disk"), sr=False, name="simple2")
    c.ok(not h.get_structured_replies_negotiated(), "set_request_structured_replies(False) connects")
    d = os.urandom(64 * KiB)
    h.pwrite(d, 2 * MiB)
    c.ok(h.pread(64 * KiB, 2 * MiB) == d, "simple replies: write/read round trip")
    h.flush()
    h.trim(4096, 2 * MiB + 128 * KiB)
    h.zero(4096, 2 * MiB + 128 * KiB)
    c.ok(True, "simple replies: flush, trim, zero")
    close(h)


def sec_raw_wire(c, b, disk_path):
    print("\n== raw wire: cookies echoed byte for byte, unknown command ==")
    r = Raw(b.port)
    try:
        c.eq(r.go(OPT_GO, "disk"), ("ok", FILE_SIZE), "raw GO 'disk'")
        cookie = os.urandom(8)
        r.request(0x42, cookie, 0, 4096)                    # unknown command type
        err, got = r.simple_reply()
        c.eq((err, got), (EINVAL, cookie), "unknown command type 0x42 -> EINVAL, cookie echoed")
        rnd = random.Random(SEED + 2)
        sent = {}
        for i in range(160):
            ck = os.urandom(8)
            while ck in sent:
                ck = os.urandom(8)
            off = rnd.randrange(0, 24 * MiB // 512) * 512
            ln = rnd.choice([512, 4096, 65536])
            sent[ck] = (off, ln)
        for ck, (off, ln) in sent.items():
            r.request(0, ck, off, ln)                        # NBD_CMD_READ, simple replies
        order, bad = [], []
        with open(disk_path, "rb") as f:
            for _ in range(len(sent)):
                err, ck = r.simple_reply()
                if ck not in sent:
                    bad.append(f"unknown cookie {ck.hex()}")
                    break
                off, ln = sent[ck]
                data = r.recv(ln) if err == 0 else b""
                order.append(ck)
                f.seek(off)
                if err != 0 or data != f.read(ln):
                    bad.append(f"cookie {ck.hex()} off={off} len={ln} err={err}")
        c.ok(not bad and sorted(order) == sorted(sent),
             "160 pipelined raw reads: each reply carries one of our random cookies exactly once "
             "and the data of that request's offset", "; ".join(bad[:5]))
        ooo = sum(1 for a, b2 in zip(order, sent) if a != b2)
        print(f"     ({ooo} of {len(order)} raw replies out of submission order)")
        r.request(2, os.urandom(8), 0, 0)                    # NBD_CMD_DISC
        c.ok(r.closed_by_server(), "raw NBD_CMD_DISC: server closes the connection")
    finally:
        r.close()


def body(c):
    print(f"seed {SEED} (set BLOCKD_TEST_SEED to repeat)")
    with fx.temp_dir() as d:
        disk = os.path.join(d, "disk.img")
        ro = os.path.join(d, "ro.img")
        with open(ro, "wb") as f:
            f.write(bytes([RO_BYTE]) * RO_SIZE)
        volumes = [f"name=disk,path={disk},size=64MiB",
                   "name=mem,backend=memory,size=16MiB",
                   f"name=ro,path={ro},read-only"]
        with fx.Blockd(volumes) as b:
            print(f"blockd at {b.uri()}")
            try:
                sec_commands(c, b, disk)
                sec_model(c, b)
                sec_pipelining(c, b)
                sec_multiconn(c, b, disk)
                sec_bad_input(c, b, ro)
                sec_exports(c, b)
                sec_raw_wire(c, b, disk)
            finally:
                for h in _handles:
                    try:
                        if not h.aio_is_closed() and not h.aio_is_dead():
                            h.shutdown(nbd.SHUTDOWN_ABANDON_PENDING)
                    except nbd.Error:
                        pass
            c.ok(b.proc.poll() is None, "blockd is still running after all of the above")
            rc = b.stop()
            c.eq(rc, 0, "blockd exits 0 on SIGTERM")


if __name__ == "__main__":
    fx.test_main(body, timeout=180)
