#!/usr/bin/env python3
"""qemu-img and qemu-io judge blockd.

  * `qemu-img info` sees the right virtual size;
  * `qemu-img convert -n` a 64 MiB random raw image (with zero runs) into blockd,
    `qemu-img compare` both ways, the backing file equals the source byte for byte;
  * `qemu-img convert` back out of blockd gives the same bytes;
  * `qemu-img map` (block status) never calls a range zero that is not zero;
  * negative control: after changing one block, `qemu-img compare` reports the
    mismatch at that offset (so the comparison can fail);
  * `qemu-io -f raw nbd://...`: write/read/verify patterns, unaligned I/O
    (qemu does read-modify-write), write -z, FUA writes, discard, aio writes and
    flush, vectored I/O; a wrong pattern is detected (negative control).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

fx.use_system_python()
import hashlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

MiB = 1 << 20
SIZE = 64 * MiB


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 * MiB), b""):
            h.update(chunk)
    return h.hexdigest()


def make_source(path):
    """64 MiB: random data with zero runs of various sizes (qemu-img detects zeroes)."""
    zero_runs = [(8 * MiB, 8 * MiB), (20 * MiB, 64 * 1024), (30 * MiB + 4096, 4096),
                 (40 * MiB, 1 * MiB), (SIZE - 2 * MiB, 2 * MiB)]
    with open(path, "wb") as f:
        for off in range(0, SIZE, 4 * MiB):
            f.write(os.urandom(4 * MiB))
        for off, ln in zero_runs:
            f.seek(off)
            f.write(bytes(ln))
    return zero_runs


def qemu_io(uri, cmds, timeout=60):
    args = ["qemu-io", "-f", "raw", uri]
    for cmd in cmds:
        args += ["-c", cmd]
    return fx.run(args, timeout=timeout, check=False)


def body(c):
    fx.require_tools("qemu-img", "qemu-io")
    with fx.temp_dir() as d:
        src = os.path.join(d, "src.img")
        out = os.path.join(d, "out.img")
        disk = os.path.join(d, "disk.img")
        zero_runs = make_source(src)
        src_sum = sha256(src)
        with fx.Blockd([f"name=disk,path={disk},size=64MiB",
                        "name=scratch,backend=memory,size=16MiB"]) as b:
            uri = b.uri("disk")
            r = fx.run(["qemu-img", "info", "--output=json", uri])
            info = json.loads(r.stdout)
            c.eq(info.get("virtual-size"), SIZE, "qemu-img info: virtual size")

            fx.run(["qemu-img", "convert", "-n", "-p", "-f", "raw", "-O", "raw", src, uri],
                   timeout=180)
            c.ok(True, "qemu-img convert -n src.img -> blockd")
            r = fx.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", src, uri], check=False)
            c.ok(r.returncode == 0, "qemu-img compare src.img blockd: identical",
                 f"rc={r.returncode} {r.stdout.strip()} {r.stderr.strip()}")
            r = fx.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", uri, src], check=False)
            c.ok(r.returncode == 0, "qemu-img compare blockd src.img: identical",
                 f"rc={r.returncode} {r.stdout.strip()} {r.stderr.strip()}")
            c.eq(sha256(disk), src_sum, "blockd's backing file == source image (sha256)")

            fx.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", uri, out], timeout=180)
            c.eq(sha256(out), src_sum, "qemu-img convert blockd -> out.img gives the source bytes")

            r = fx.run(["qemu-img", "map", "--output=json", "-f", "raw", uri])
            entries = json.loads(r.stdout)
            pos, tidy = 0, True
            for e in entries:
                tidy &= e["start"] == pos
                pos = e["start"] + e["length"]
            c.ok(tidy and pos == SIZE, "qemu-img map covers the export", f"ends at {pos}")
            wrong = []
            with open(src, "rb") as f:
                for e in entries:
                    if e.get("zero"):
                        f.seek(e["start"])
                        left = e["length"]
                        while left:
                            n = min(left, 4 * MiB)
                            if f.read(n).count(0) != n:
                                wrong.append((e["start"], e["length"]))
                                break
                            left -= n
            zero_bytes = sum(e["length"] for e in entries if e.get("zero"))
            print(f"     (qemu-img map: {zero_bytes} bytes reported as zero; "
                  f"source has {sum(n for _, n in zero_runs)} bytes in zero runs)")
            c.ok(not wrong, "qemu-img map: every range reported as zero really is zero",
                 f"non-zero data in {wrong[:5]}")

            # negative control: one changed block must be found by compare
            r = qemu_io(uri, ["write -P 0x5a 5M 4k"])
            c.eq(r.returncode, 0, "qemu-io write -P 0x5a 5M 4k")
            r = fx.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", src, uri], check=False)
            c.ok(r.returncode == 1 and "5242880" in r.stdout,
                 "qemu-img compare finds the changed block at offset 5242880",
                 f"rc={r.returncode} {r.stdout.strip()} {r.stderr.strip()}")

            # qemu-io patterns on the memory volume and on the file volume
            for vol in ("scratch", "disk"):
                u = b.uri(vol)
                cmds = [
                    "write -P 0xab 0 1M", "read -P 0xab 0 1M",
                    "write -P 0xcd 1000 3000", "read -P 0xcd 1000 3000",
                    "read -P 0xab 0 1000", "read -P 0xab 4000 4096",
                    "write -P 0x77 1M 1M", "write -z 1M 512k", "read -P 0 1M 512k",
                    "read -P 0x77 1536k 512k",
                    "write -f -P 0x11 4M 64k", "read -P 0x11 4M 64k",
                    "write -P 0x66 6M 1M", "discard 6M 512k", "write -P 0x22 6M 512k",
                    "read -P 0x22 6M 512k", "read -P 0x66 6656k 512k",
                    "aio_write -P 0x33 8M 64k", "aio_write -P 0x44 9M 64k", "aio_flush",
                    "read -P 0x33 8M 64k", "read -P 0x44 9M 64k",
                    "writev -P 0x55 10M 4k 8k 512", "readv -P 0x55 10M 4k 8k 512",
                    "flush",
                ]
                r = qemu_io(u, cmds)
                failed = [ln for ln in (r.stdout + r.stderr).splitlines()
                          if re.search(r"fail|error", ln, re.I)]
                c.ok(r.returncode == 0 and not failed,
                     f"qemu-io on {vol}: {len(cmds)} write/read/verify commands all pass",
                     f"rc={r.returncode}; {failed[:5]}\n{r.stdout}\n{r.stderr}")
                r = qemu_io(u, ["read -P 0xab 0 64k", "read -P 0x99 0 4k"])
                c.ok(r.returncode != 0 and "Pattern verification failed" in r.stdout,
                     f"qemu-io on {vol}: a wrong expected pattern is detected (negative control)",
                     f"rc={r.returncode} {r.stdout}")

            rc = b.stop()
            c.eq(rc, 0, "blockd exits 0 on SIGTERM")
            # blockd flushed on exit: the file still holds what qemu-io wrote
            with open(disk, "rb") as f:
                f.seek(4 * MiB)
                c.ok(f.read(64 * 1024) == b"\x11" * 65536, "backing file holds qemu-io's FUA write")


if __name__ == "__main__":
    fx.test_main(body, timeout=240)
