#!/usr/bin/env python3
"""nbdraw: a small raw NBD client for protocol tests (standard library only).

It speaks the fixed newstyle handshake and the transmission phase byte by byte so
that tests can send exactly the malformed input that real clients (libnbd, qemu,
the kernel) never produce. Nothing here is clever: every message is built with
struct, and every read has a deadline, so a misbehaving server makes a test fail
with a Timeout instead of hanging it.

Reference: the NBD protocol specification (nbd-proto.md). Section names in the
comments below refer to it.

Typical use:

    c = nbdraw.Conn("127.0.0.1", port)
    c.read_greeting()
    c.send_client_flags(nbdraw.FLAG_C_FIXED_NEWSTYLE | nbdraw.FLAG_C_NO_ZEROES)
    r = c.option(nbdraw.OPT_STRUCTURED_REPLY)         # -> [OptReply(ACK)]
    g = c.go(b"disk", [nbdraw.INFO_BLOCK_SIZE])        # -> InfoResult
    cookie = c.send_request(nbdraw.CMD_READ, offset=0, length=4096)
    rep = c.read_reply()                               # -> Reply

or simply  c = nbdraw.negotiate("127.0.0.1", port, export=b"disk", structured=True).
"""
import faulthandler
import os
import socket
import struct
import sys
import threading
import time

# --- magic numbers ("Handshake", "Transmission") ---------------------------------
NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT"
OPT_REPLY_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

# --- handshake flags (server) / client flags ------------------------------------
FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1
FLAG_C_FIXED_NEWSTYLE = 1 << 0
FLAG_C_NO_ZEROES = 1 << 1

# --- transmission flags ----------------------------------------------------------
TF_HAS_FLAGS = 1 << 0
TF_READ_ONLY = 1 << 1
TF_SEND_FLUSH = 1 << 2
TF_SEND_FUA = 1 << 3
TF_ROTATIONAL = 1 << 4
TF_SEND_TRIM = 1 << 5
TF_SEND_WRITE_ZEROES = 1 << 6
TF_SEND_DF = 1 << 7
TF_CAN_MULTI_CONN = 1 << 8
TF_SEND_RESIZE = 1 << 9
TF_SEND_CACHE = 1 << 10
TF_SEND_FAST_ZERO = 1 << 11

# --- options ---------------------------------------------------------------------
OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_PEEK_EXPORT = 4
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10
OPT_EXTENDED_HEADERS = 11

# --- option reply types ----------------------------------------------------------
REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_FLAG_ERROR = 1 << 31
REP_ERR_UNSUP = REP_FLAG_ERROR | 1
REP_ERR_POLICY = REP_FLAG_ERROR | 2
REP_ERR_INVALID = REP_FLAG_ERROR | 3
REP_ERR_PLATFORM = REP_FLAG_ERROR | 4
REP_ERR_TLS_REQD = REP_FLAG_ERROR | 5
REP_ERR_UNKNOWN = REP_FLAG_ERROR | 6
REP_ERR_SHUTDOWN = REP_FLAG_ERROR | 7
REP_ERR_BLOCK_SIZE_REQD = REP_FLAG_ERROR | 8
REP_ERR_TOO_BIG = REP_FLAG_ERROR | 9
REP_ERR_EXT_HEADER_REQD = REP_FLAG_ERROR | 10

# --- NBD_INFO types ----------------------------------------------------------------
INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

# --- commands and command flags ----------------------------------------------------
CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7
CMD_RESIZE = 8

CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_DF = 1 << 2
CMD_FLAG_REQ_ONE = 1 << 3
CMD_FLAG_FAST_ZERO = 1 << 4
CMD_FLAG_PAYLOAD_LEN = 1 << 5

# --- structured replies --------------------------------------------------------------
REPLY_FLAG_DONE = 1 << 0
REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = (1 << 15) | 1
REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2

STATE_HOLE = 1 << 0
STATE_ZERO = 1 << 1

# --- error values ("Error values") -------------------------------------------------
EPERM = 1
EIO = 5
ENOMEM = 12
EINVAL = 22
ENOSPC = 28
EOVERFLOW = 75
ENOTSUP = 95
ESHUTDOWN = 108

_NAMES = {}
for _k, _v in list(globals().items()):
    if _k.startswith(("OPT_", "REP_", "CMD_", "INFO_", "REPLY_TYPE_")) and isinstance(_v, int):
        _NAMES.setdefault((_k.split("_")[0], _v), _k)
_ERRNAMES = {EPERM: "EPERM", EIO: "EIO", ENOMEM: "ENOMEM", EINVAL: "EINVAL", ENOSPC: "ENOSPC",
             EOVERFLOW: "EOVERFLOW", ENOTSUP: "ENOTSUP", ESHUTDOWN: "ESHUTDOWN", 0: "OK"}


def rep_name(t):
    if t == REP_FLAG_ERROR:
        return "0x80000000"
    return _NAMES.get(("REP", t), f"REP_{t:#x}")


def opt_name(o):
    return _NAMES.get(("OPT", o), f"OPT_{o}")


def cmd_name(c):
    return _NAMES.get(("CMD", c), f"CMD_{c}")


def err_name(e):
    return _ERRNAMES.get(e, str(e))


def chunk_type_name(t):
    for k, v in globals().items():
        if k.startswith("REPLY_TYPE_") and v == t:
            return k
    return f"REPLY_TYPE_{t:#x}"


DEFAULT_TIMEOUT = 10.0


# --- exceptions ------------------------------------------------------------------------
class NbdError(Exception):
    pass


class ProtocolError(NbdError):
    """The server sent something the specification does not allow here."""


class Closed(NbdError):
    """The peer closed (EOF or reset). .data holds bytes received before the close."""

    def __init__(self, msg, data=b""):
        super().__init__(msg)
        self.data = data


class Timeout(NbdError):
    """No (complete) answer within the deadline. .data holds the partial bytes."""

    def __init__(self, msg, data=b""):
        super().__init__(msg)
        self.data = data


# --- message builders (pure functions; usable for pipelining) ------------------------
def option_bytes(opt, data=b"", length=None, magic=IHAVEOPT):
    """An option header + data. length overrides the length field (lying allowed)."""
    if length is None:
        length = len(data)
    return struct.pack(">QII", magic, opt, length) + data


def info_data(name, infos=(), namelen=None, nrinfos=None, extra=b""):
    """Data for NBD_OPT_INFO / NBD_OPT_GO. namelen/nrinfos override the counts (lying allowed)."""
    name = _b(name)
    if namelen is None:
        namelen = len(name)
    if nrinfos is None:
        nrinfos = len(infos)
    return (struct.pack(">I", namelen) + name + struct.pack(">H", nrinfos)
            + b"".join(struct.pack(">H", i) for i in infos) + extra)


def meta_data(name, queries=(), namelen=None, nrqueries=None, querylens=None, extra=b""):
    """Data for NBD_OPT_LIST/SET_META_CONTEXT. Counts/lengths may be overridden (lying allowed)."""
    name = _b(name)
    if namelen is None:
        namelen = len(name)
    if nrqueries is None:
        nrqueries = len(queries)
    out = struct.pack(">I", namelen) + name + struct.pack(">I", nrqueries)
    for i, q in enumerate(queries):
        q = _b(q)
        ql = len(q) if querylens is None or querylens[i] is None else querylens[i]
        out += struct.pack(">I", ql) + q
    return out + extra


def request_bytes(cmd, offset=0, length=0, cookie=0, flags=0, payload=b"", magic=REQUEST_MAGIC):
    """A 28-byte request header (+ payload). cookie: int or 8 bytes."""
    return struct.pack(">IHH8sQI", magic, flags, cmd, _cookie(cookie), offset, length) + payload


def _b(s):
    return s.encode() if isinstance(s, str) else bytes(s)


def _cookie(c):
    if isinstance(c, int):
        return struct.pack(">Q", c)
    c = bytes(c)
    if len(c) != 8:
        raise ValueError("cookie must be 8 bytes")
    return c


# --- parsed messages -------------------------------------------------------------------
class OptReply:
    def __init__(self, opt, type_, data):
        self.opt, self.type, self.data = opt, type_, data

    @property
    def is_error(self):
        return bool(self.type & REP_FLAG_ERROR)

    @property
    def is_final(self):
        return self.type == REP_ACK or self.is_error

    def __repr__(self):
        return f"OptReply({opt_name(self.opt)}, {rep_name(self.type)}, {self.data[:64]!r}{'...' if len(self.data) > 64 else ''})"


def parse_info(data):
    """Parse an NBD_REP_INFO payload -> (type, value). Raises ProtocolError on bad lengths."""
    if len(data) < 2:
        raise ProtocolError(f"NBD_REP_INFO shorter than 2 bytes: {data!r}")
    (t,) = struct.unpack(">H", data[:2])
    if t == INFO_EXPORT:
        if len(data) != 12:
            raise ProtocolError(f"NBD_INFO_EXPORT length {len(data)} != 12")
        size, flags = struct.unpack(">QH", data[2:])
        return t, (size, flags)
    if t in (INFO_NAME, INFO_DESCRIPTION):
        return t, data[2:]
    if t == INFO_BLOCK_SIZE:
        if len(data) != 14:
            raise ProtocolError(f"NBD_INFO_BLOCK_SIZE length {len(data)} != 14")
        return t, struct.unpack(">III", data[2:])
    return t, data[2:]


class InfoResult:
    """Replies to NBD_OPT_INFO/GO: .final (reply type), .infos (raw NBD_REP_INFO payloads),
    .size/.tflags/.name/.description/.block_size parsed from them."""

    def __init__(self, replies):
        self.replies = replies
        self.final = replies[-1].type
        self.final_data = replies[-1].data
        self.infos = [r.data for r in replies[:-1] if r.type == REP_INFO]
        self.others = [r for r in replies[:-1] if r.type != REP_INFO]
        self.size = self.tflags = self.name = self.description = self.block_size = None
        self.types = []
        for d in self.infos:
            t, v = parse_info(d)
            self.types.append(t)
            if t == INFO_EXPORT:
                self.size, self.tflags = v
            elif t == INFO_NAME:
                self.name = v
            elif t == INFO_DESCRIPTION:
                self.description = v
            elif t == INFO_BLOCK_SIZE:
                self.block_size = v

    def __repr__(self):
        return (f"InfoResult(final={rep_name(self.final)}, size={self.size}, tflags={self.tflags}, "
                f"name={self.name!r}, description={self.description!r}, block_size={self.block_size}, "
                f"types={self.types}, others={self.others})")


class Chunk:
    """One structured reply chunk; payload fields parsed by type."""

    def __init__(self, flags, type_, cookie, payload):
        self.flags, self.type, self.cookie, self.payload = flags, type_, cookie, payload
        self.offset = self.data = self.hole_size = self.error = self.message = None
        self.context_id = self.extents = None
        p = payload
        if type_ == REPLY_TYPE_NONE:
            if p:
                raise ProtocolError(f"NBD_REPLY_TYPE_NONE with {len(p)} payload bytes")
            if not flags & REPLY_FLAG_DONE:
                raise ProtocolError("NBD_REPLY_TYPE_NONE without NBD_REPLY_FLAG_DONE")
        elif type_ == REPLY_TYPE_OFFSET_DATA:
            if len(p) < 9:
                raise ProtocolError(f"OFFSET_DATA payload length {len(p)} < 9")
            (self.offset,) = struct.unpack(">Q", p[:8])
            self.data = p[8:]
        elif type_ == REPLY_TYPE_OFFSET_HOLE:
            if len(p) != 12:
                raise ProtocolError(f"OFFSET_HOLE payload length {len(p)} != 12")
            self.offset, self.hole_size = struct.unpack(">QI", p)
            if self.hole_size == 0:
                raise ProtocolError("OFFSET_HOLE with hole size 0")
        elif type_ == REPLY_TYPE_BLOCK_STATUS:
            if len(p) < 12 or (len(p) - 4) % 8:
                raise ProtocolError(f"BLOCK_STATUS payload length {len(p)} is not 4 + 8*n (n >= 1)")
            (self.context_id,) = struct.unpack(">I", p[:4])
            self.extents = [struct.unpack(">II", p[i:i + 8]) for i in range(4, len(p), 8)]
        elif type_ & 0x8000:
            if len(p) < 6:
                raise ProtocolError(f"error chunk payload length {len(p)} < 6")
            self.error, mlen = struct.unpack(">IH", p[:6])
            if 6 + mlen > len(p):
                raise ProtocolError(f"error chunk message length {mlen} exceeds payload {len(p)}")
            self.message = p[6:6 + mlen]
            if type_ == REPLY_TYPE_ERROR_OFFSET:
                if len(p) != 6 + mlen + 8:
                    raise ProtocolError(f"ERROR_OFFSET payload length {len(p)} != 14 + {mlen}")
                (self.offset,) = struct.unpack(">Q", p[6 + mlen:])
            elif type_ == REPLY_TYPE_ERROR and len(p) != 6 + mlen:
                raise ProtocolError(f"ERROR payload length {len(p)} != 6 + message length {mlen}")
            if self.error == 0:
                raise ProtocolError("error chunk with error value 0")
        else:
            raise ProtocolError(f"unknown structured reply chunk type {type_:#x}")

    @property
    def done(self):
        return bool(self.flags & REPLY_FLAG_DONE)

    @property
    def is_error(self):
        return bool(self.type & 0x8000)

    def __repr__(self):
        extra = ""
        if self.type == REPLY_TYPE_OFFSET_DATA:
            extra = f" offset={self.offset} len={len(self.data)}"
        elif self.type == REPLY_TYPE_OFFSET_HOLE:
            extra = f" offset={self.offset} size={self.hole_size}"
        elif self.type == REPLY_TYPE_BLOCK_STATUS:
            extra = f" ctx={self.context_id} extents={self.extents[:8]}{'...' if len(self.extents) > 8 else ''}"
        elif self.is_error:
            extra = f" error={err_name(self.error)} msg={self.message!r}" + (
                f" offset={self.offset}" if self.offset is not None else "")
        return f"Chunk({chunk_type_name(self.type)} flags={self.flags:#x} cookie={self.cookie.hex()}{extra})"


class Reply:
    """A complete reply to one request: a simple reply, or all chunks up to DONE.

    .error is the simple reply's error, or the first error chunk's error, else 0.
    .data is the read payload (simple) or None (structured; see read_data())."""

    def __init__(self, cookie, cmd, offset, length, simple, error=0, data=None, chunks=()):
        self.cookie, self.cmd, self.offset, self.length = cookie, cmd, offset, length
        self.simple, self.error, self.data, self.chunks = simple, error, data, list(chunks)

    def read_data(self):
        """Reassemble a structured READ reply; validates the chunk rules of NBD_CMD_READ.
        Returns the bytes of [offset, offset+length). Raises ProtocolError."""
        if self.simple:
            return self.data
        buf = bytearray(self.length)
        covered = []
        for i, c in enumerate(self.chunks):
            if c.done and i != len(self.chunks) - 1:
                raise ProtocolError("chunk with DONE is not the last")
            if c.type == REPLY_TYPE_OFFSET_DATA:
                start, n = c.offset, len(c.data)
            elif c.type == REPLY_TYPE_OFFSET_HOLE:
                start, n = c.offset, c.hole_size
            elif c.type == REPLY_TYPE_NONE or c.is_error:
                continue
            else:
                raise ProtocolError(f"chunk {c!r} not valid for NBD_CMD_READ")
            if start < self.offset or start + n > self.offset + self.length:
                raise ProtocolError(f"{c!r} outside request [{self.offset}, {self.offset + self.length})")
            for s, e in covered:
                if start < e and s < start + n:
                    raise ProtocolError(f"{c!r} overlaps earlier content [{s}, {e})")
            covered.append((start, start + n))
            if c.type == REPLY_TYPE_OFFSET_DATA:
                buf[start - self.offset:start - self.offset + n] = c.data
        if self.error == 0:
            total = sum(e - s for s, e in covered)
            if total != self.length:
                raise ProtocolError(f"successful READ reply covers {total} of {self.length} bytes")
        return bytes(buf)

    def __repr__(self):
        if self.simple:
            return (f"Reply(simple {cmd_name(self.cmd)} cookie={self.cookie.hex()} error={err_name(self.error)}"
                    f" data={len(self.data) if self.data is not None else None} bytes)")
        return f"Reply(structured {cmd_name(self.cmd)} cookie={self.cookie.hex()} error={err_name(self.error)} chunks={self.chunks})"


# --- the connection -------------------------------------------------------------------
class Conn:
    def __init__(self, host, port, timeout=DEFAULT_TIMEOUT, connect_timeout=10.0):
        self.host, self.port = host, port
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.hflags = None
        self.cflags = None
        self.size = None
        self.tflags = None
        self.structured = False
        self.contexts = {}  # id -> name, from the last SET_META_CONTEXT
        self._inflight = {}  # cookie -> (cmd, offset, length)
        self._partial = {}   # cookie -> [chunks]
        self._ready = []     # completed Reply objects not yet handed out
        self._next_cookie = 1

    # --- raw I/O --------------------------------------------------------------
    def recv_exact(self, n, timeout=None):
        """Read exactly n bytes or raise Closed/Timeout (with the partial data)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"timed out after {len(buf)} of {n} bytes", bytes(buf))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except socket.timeout:
                raise Timeout(f"timed out after {len(buf)} of {n} bytes", bytes(buf)) from None
            except OSError as e:  # ECONNRESET and friends
                raise Closed(f"connection reset ({e}) after {len(buf)} of {n} bytes", bytes(buf)) from None
            if not chunk:
                raise Closed(f"EOF after {len(buf)} of {n} bytes", bytes(buf))
            buf += chunk
        return bytes(buf)

    def send(self, data, timeout=None):
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise Timeout("timed out sending") from None
        except OSError as e:
            raise Closed(f"send failed: {e}") from None

    def wait_closed(self, timeout=5.0, max_bytes=1 << 20):
        """Read until the server closes. Returns (closed, data_received_meanwhile).
        closed is False if the deadline passed first."""
        deadline = time.monotonic() + timeout
        data = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, bytes(data)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False, bytes(data)
            except OSError:
                return True, bytes(data)
            if not chunk:
                return True, bytes(data)
            if len(data) < max_bytes:
                data += chunk

    def pending_bytes(self, timeout=0.5):
        """Whatever arrives within timeout without expecting anything (b'' if nothing).
        Returns None if the connection was closed and nothing arrived."""
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            return b""
        except OSError:
            return None
        return d if d else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        """Close with RST (SO_LINGER 0) instead of FIN."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- handshake ------------------------------------------------------------
    def read_greeting(self, timeout=None):
        d = self.recv_exact(18, timeout)
        m1, m2, hflags = struct.unpack(">QQH", d)
        if m1 != NBDMAGIC:
            raise ProtocolError(f"greeting magic {m1:#x} != NBDMAGIC")
        if m2 != IHAVEOPT:
            raise ProtocolError(f"greeting second magic {m2:#x} != IHAVEOPT (oldstyle?)")
        self.hflags = hflags
        return hflags

    def send_client_flags(self, flags):
        self.cflags = flags
        self.send(struct.pack(">I", flags))

    def send_option(self, opt, data=b"", length=None, magic=IHAVEOPT):
        self.send(option_bytes(opt, data, length, magic))

    def read_option_reply(self, timeout=None):
        hdr = self.recv_exact(20, timeout)
        magic, opt, typ, length = struct.unpack(">QIII", hdr)
        if magic != OPT_REPLY_MAGIC:
            raise ProtocolError(f"option reply magic {magic:#x} != {OPT_REPLY_MAGIC:#x} (header {hdr.hex()})")
        if length > 16 << 20:
            raise ProtocolError(f"option reply length {length} absurd")
        data = self.recv_exact(length, timeout) if length else b""
        return OptReply(opt, typ, data)

    def read_option_replies(self, opt, timeout=None, limit=100000):
        """All replies to one option, up to and including the final one (ACK or error)."""
        out = []
        while True:
            r = self.read_option_reply(timeout)
            if r.opt != opt:
                raise ProtocolError(f"reply for option {r.opt} while waiting for option {opt}: {r!r}")
            out.append(r)
            if r.is_final:
                return out
            if len(out) > limit:
                raise ProtocolError("too many option replies")

    def option(self, opt, data=b"", length=None, magic=IHAVEOPT, timeout=None):
        """Send one option and return all its replies (last one final)."""
        self.send_option(opt, data, length, magic)
        return self.read_option_replies(opt, timeout)

    def info(self, name=b"", infos=(), timeout=None, **kw):
        return InfoResult(self.option(OPT_INFO, info_data(name, infos, **kw), timeout=timeout))

    def go(self, name=b"", infos=(), timeout=None, **kw):
        res = InfoResult(self.option(OPT_GO, info_data(name, infos, **kw), timeout=timeout))
        if res.final == REP_ACK:
            if res.size is None:
                raise ProtocolError("NBD_OPT_GO acknowledged without NBD_INFO_EXPORT")
            self.size, self.tflags = res.size, res.tflags
        return res

    def structured_reply(self):
        r = self.option(OPT_STRUCTURED_REPLY)
        if r[-1].type == REP_ACK:
            self.structured = True
        return r

    def meta_context(self, opt, name=b"", queries=(), **kw):
        """LIST/SET_META_CONTEXT -> (final reply type, [(id, name)], replies)."""
        replies = self.option(opt, meta_data(name, queries, **kw))
        ctx = []
        for r in replies[:-1]:
            if r.type != REP_META_CONTEXT:
                raise ProtocolError(f"unexpected reply {r!r} to {opt_name(opt)}")
            if len(r.data) < 4:
                raise ProtocolError(f"NBD_REP_META_CONTEXT shorter than 4 bytes: {r!r}")
            ctx.append((struct.unpack(">I", r.data[:4])[0], r.data[4:]))
        if opt == OPT_SET_META_CONTEXT:
            self.contexts = dict(ctx) if replies[-1].type == REP_ACK else {}
        return replies[-1].type, ctx, replies

    def export_name(self, name=b"", timeout=None):
        """NBD_OPT_EXPORT_NAME -> (size, tflags, zeroes_received). Reads the 124 zero bytes
        unless NO_ZEROES was negotiated; raises Closed if the server hangs up."""
        self.send_option(OPT_EXPORT_NAME, _b(name))
        d = self.recv_exact(10, timeout)
        self.size, self.tflags = struct.unpack(">QH", d)
        zeroes = None
        negotiated = (self.cflags or 0) & FLAG_C_NO_ZEROES
        if not negotiated:
            zeroes = self.recv_exact(124, timeout)
        return self.size, self.tflags, zeroes

    # --- transmission ---------------------------------------------------------
    @property
    def inflight(self):
        """Number of tracked requests not yet completely answered."""
        return len(self._inflight)

    def new_cookie(self):
        c = self._next_cookie
        self._next_cookie += 1
        return struct.pack(">Q", c)

    def track(self, cmd, offset, length, cookie):
        """Remember a request sent by hand (e.g. pipelined with request_bytes)."""
        self._inflight[_cookie(cookie)] = (cmd, offset, length)

    def send_request(self, cmd, offset=0, length=0, cookie=None, flags=0, payload=b"",
                     magic=REQUEST_MAGIC, track=True):
        """Send a request header + payload; returns the cookie (8 bytes)."""
        cookie = self.new_cookie() if cookie is None else _cookie(cookie)
        if track and cmd != CMD_DISC:
            self._inflight[cookie] = (cmd, offset, length)
        self.send(request_bytes(cmd, offset, length, cookie, flags, payload, magic))
        return cookie

    def read_message(self, timeout=None):
        """Read one reply message: a simple reply (payload read for a tracked READ with
        error 0 when structured replies are off) or one structured chunk.
        Returns ('simple', cookie, error, data) or ('chunk', Chunk)."""
        d = self.recv_exact(4, timeout)
        (magic,) = struct.unpack(">I", d)
        if magic == SIMPLE_REPLY_MAGIC:
            error, cookie = struct.unpack(">I8s", self.recv_exact(12, timeout))
            data = b""
            info = self._inflight.get(cookie)
            if info is None:
                raise ProtocolError(f"simple reply for unknown cookie {cookie.hex()} (error {error})")
            if info[0] == CMD_READ and error == 0:
                data = self.recv_exact(info[2], timeout) if info[2] else b""
            return ("simple", cookie, error, data)
        if magic == STRUCTURED_REPLY_MAGIC:
            flags, typ, cookie, length = struct.unpack(">HH8sI", self.recv_exact(16, timeout))
            if length > (64 << 20):
                raise ProtocolError(f"structured chunk length {length} absurd")
            payload = self.recv_exact(length, timeout) if length else b""
            return ("chunk", Chunk(flags, typ, cookie, payload))
        raise ProtocolError(f"bad reply magic {magic:#010x}")

    def read_reply(self, timeout=None):
        """The next complete reply (any cookie). Structured chunks are gathered until DONE."""
        if self._ready:
            return self._ready.pop(0)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("no complete reply before the deadline")
            m = self.read_message(left)
            if m[0] == "simple":
                _, cookie, error, data = m
                cmd, off, ln = self._inflight.pop(cookie)
                if cookie in self._partial:
                    raise ProtocolError(f"simple reply for cookie {cookie.hex()} after structured chunks")
                if self.structured and cmd == CMD_READ:
                    raise ProtocolError("simple reply to NBD_CMD_READ although structured replies were negotiated")
                return Reply(cookie, cmd, off, ln, True, error, data)
            c = m[1]
            if not self.structured:
                raise ProtocolError(f"structured chunk without negotiation: {c!r}")
            if c.cookie not in self._inflight:
                raise ProtocolError(f"chunk for unknown cookie: {c!r}")
            self._partial.setdefault(c.cookie, []).append(c)
            if c.done:
                chunks = self._partial.pop(c.cookie)
                cmd, off, ln = self._inflight.pop(c.cookie)
                err = next((x.error for x in chunks if x.is_error), 0)
                return Reply(c.cookie, cmd, off, ln, False, err, None, chunks)

    def read_replies(self, n, timeout=None):
        """n complete replies, in arrival order."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return [self.read_reply(max(0.001, deadline - time.monotonic())) for _ in range(n)]

    def request(self, cmd, offset=0, length=0, flags=0, payload=b"", cookie=None, timeout=None):
        """Send one request and wait for its reply (no other request may be in flight)."""
        ck = self.send_request(cmd, offset, length, cookie, flags, payload)
        r = self.read_reply(timeout)
        if r.cookie != ck:
            raise ProtocolError(f"reply cookie {r.cookie.hex()} != request cookie {ck.hex()}")
        return r

    def read(self, offset, length, flags=0, timeout=None):
        """READ -> bytes; raises NbdError on error."""
        r = self.request(CMD_READ, offset, length, flags, timeout=timeout)
        if r.error:
            raise NbdError(f"READ {offset}+{length} failed: {err_name(r.error)} {r!r}")
        return r.read_data()

    def write(self, offset, data, flags=0, timeout=None):
        r = self.request(CMD_WRITE, offset, len(data), flags, data, timeout=timeout)
        if r.error:
            raise NbdError(f"WRITE {offset}+{len(data)} failed: {err_name(r.error)} {r!r}")
        return r

    def flush(self, timeout=None):
        r = self.request(CMD_FLUSH, timeout=timeout)
        if r.error:
            raise NbdError(f"FLUSH failed: {err_name(r.error)}")
        return r

    def disc(self):
        self.send_request(CMD_DISC, track=False)


# --- conveniences ------------------------------------------------------------------------
def negotiate(host, port, export=b"", structured=False, meta=(), infos=(), no_zeroes=True,
              timeout=DEFAULT_TIMEOUT):
    """Connect, fixed-newstyle handshake, optional STRUCTURED_REPLY and SET_META_CONTEXT,
    then GO. Returns a Conn in transmission phase. Raises NbdError on any refusal."""
    c = Conn(host, port, timeout)
    try:
        hf = c.read_greeting()
        if not hf & FLAG_FIXED_NEWSTYLE:
            raise ProtocolError(f"server handshake flags {hf:#x} lack FIXED_NEWSTYLE")
        cf = FLAG_C_FIXED_NEWSTYLE | (FLAG_C_NO_ZEROES if no_zeroes and hf & FLAG_NO_ZEROES else 0)
        c.send_client_flags(cf)
        if structured:
            r = c.structured_reply()
            if r[-1].type != REP_ACK:
                raise ProtocolError(f"STRUCTURED_REPLY refused: {r}")
        if meta:
            t, ctx, r = c.meta_context(OPT_SET_META_CONTEXT, export, meta)
            if t != REP_ACK:
                raise ProtocolError(f"SET_META_CONTEXT refused: {r}")
        g = c.go(export, infos)
        if g.final != REP_ACK:
            raise ProtocolError(f"GO {export!r} refused: {g!r}")
        return c
    except BaseException:
        c.close()
        raise


def pattern(seed, n):
    """Deterministic, non-repeating-looking bytes (so misplaced data is detectable)."""
    out = bytearray()
    seed &= 0xFFFFFFFF
    i = 0
    while len(out) < n:
        out += struct.pack(">IIII", seed, i, (seed * 2654435761 + i) & 0xFFFFFFFF, ~i & 0xFFFFFFFF)
        i += 1
    return bytes(out[:n])


def file_bytes(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        d = f.read(length)
    return d + b"\0" * (length - len(d))


# --- test runner ---------------------------------------------------------------------------
class CaseFailure(AssertionError):
    pass


def check(cond, what, expected=None, actual=None):
    """Fail the current case with 'expected vs actual' if cond is false."""
    if not cond:
        msg = what
        if expected is not None or actual is not None:
            msg += f"\n      expected: {expected}\n      actual:   {actual}"
        raise CaseFailure(msg)


def check_eq(actual, expected, what):
    check(actual == expected, what, expected, actual)


def start_watchdog(seconds, cleanup):
    """If the script is still running after `seconds`, dump all stacks, run cleanup()
    (kill the servers this script started) and exit 1 -- before ctest's own timeout."""
    def fire():
        sys.stdout.flush()
        sys.stderr.write(f"\nFAIL: test did not finish within {seconds}s (a request got no reply?)\n")
        faulthandler.dump_traceback(all_threads=True)
        try:
            cleanup()
        finally:
            sys.stderr.flush()
            os._exit(1)
    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()
    return t


def select_cases(cases, argv):
    """Command-line arguments, if any, name the cases to run (substring match)."""
    if not argv:
        return cases
    chosen = [c for c in cases if any(a in c.__name__ for a in argv)]
    if not chosen:
        raise SystemExit(f"no case matches {argv}; cases: {[c.__name__ for c in cases]}")
    return chosen


def run_cases(cases):
    """Run case functions in order; keep going after failures; return exit code (0/1)."""
    failures = []
    t_all = time.monotonic()
    for case in cases:
        name = case.__name__
        t0 = time.monotonic()
        print(f"--- {name}", flush=True)
        try:
            case()
        except CaseFailure as e:
            failures.append((name, str(e)))
            print(f"FAIL {name}: {e}", flush=True)
            continue
        except Exception as e:  # NbdError, OSError, ...
            failures.append((name, f"{type(e).__name__}: {e}"))
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            continue
        print(f"ok   {name} ({time.monotonic() - t0:.2f}s)", flush=True)
    print(f"=== {len(cases) - len(failures)}/{len(cases)} passed in {time.monotonic() - t_all:.1f}s")
    if failures:
        print("=== FAILURES:")
        for name, msg in failures:
            print(f"  {name}: {msg}")
        return 1
    return 0
