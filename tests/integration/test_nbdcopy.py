#!/usr/bin/env python3
"""nbdcopy judges blockd (multi-conn copies, sparseness, block status).

  * nbdcopy sparse file -> blockd (4 connections, --flush): the backing file has
    the same bytes and stays sparse (st_blocks close to the source's);
  * nbdcopy --allocated file -> blockd: the backing file becomes fully allocated
    (WRITE_ZEROES with NO_HOLE really allocates) and still has the same bytes;
  * nbdcopy blockd -> file: same bytes;
  * nbdcopy -S 0 blockd -> file (no zero detection): the output is sparse only
    if blockd's base:allocation reported the holes, and content proves the holes
    were really zero; control: --no-extents -S 0 gives a fully allocated file;
  * nbdcopy blockd -> blockd (file volume to memory volume), then blockd -> stdout.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

fx.use_system_python()
import hashlib  # noqa: E402
import subprocess  # noqa: E402

MiB = 1 << 20
SIZE = 32 * MiB
DATA = [(0, 1 * MiB), (5 * MiB, 64 * 1024), (9 * MiB + 4096, 4096), (16 * MiB, 2 * MiB),
        (SIZE - 1 * MiB, 1 * MiB)]
SLACK = 1 * MiB


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def allocated(path):
    return os.stat(path).st_blocks * 512


def body(c):
    fx.require_tools("nbdcopy")
    with fx.temp_dir() as d:
        src = os.path.join(d, "src.img")
        with open(src, "wb") as f:
            f.truncate(SIZE)
            for off, ln in DATA:
                f.seek(off)
                f.write(os.urandom(ln))
        src_sum = sha256_file(src)
        src_alloc = allocated(src)
        data_bytes = sum(ln for _, ln in DATA)
        print(f"source: {SIZE} bytes, {data_bytes} bytes of data, {src_alloc} allocated")
        c.ok(src_alloc < 8 * MiB, "the source file is sparse (test precondition)", f"{src_alloc}")

        sparse_vol = os.path.join(d, "sparse.img")
        full_vol = os.path.join(d, "full.img")
        vols = [f"name=sparse,path={sparse_vol},size=32MiB",
                f"name=full,path={full_vol},size=32MiB",
                "name=mem,backend=memory,size=32MiB"]
        with fx.Blockd(vols) as b:
            fx.run(["nbdcopy", "--flush", "-C", "4", "-R", "32", src, b.uri("sparse")],
                   timeout=120)
            c.eq(sha256_file(sparse_vol), src_sum, "nbdcopy file -> blockd: same bytes")
            got = allocated(sparse_vol)
            c.ok(got <= src_alloc + SLACK, "nbdcopy file -> blockd: the volume file stays sparse",
                 f"{got} bytes allocated, source {src_alloc}")

            fx.run(["nbdcopy", "--flush", "--allocated", src, b.uri("full")], timeout=120)
            c.eq(sha256_file(full_vol), src_sum, "nbdcopy --allocated file -> blockd: same bytes")
            got = allocated(full_vol)
            c.ok(got >= SIZE - SLACK, "nbdcopy --allocated: the volume file is fully allocated",
                 f"{got} of {SIZE} bytes allocated")

            out = os.path.join(d, "out.img")
            fx.run(["nbdcopy", b.uri("sparse"), out], timeout=120)
            c.eq(sha256_file(out), src_sum, "nbdcopy blockd -> file: same bytes")
            c.ok(allocated(out) <= src_alloc + SLACK, "nbdcopy blockd -> file: output is sparse",
                 f"{allocated(out)} allocated")

            out_ext = os.path.join(d, "out-extents.img")
            fx.run(["nbdcopy", "-S", "0", b.uri("sparse"), out_ext], timeout=120)
            c.eq(sha256_file(out_ext), src_sum, "nbdcopy -S 0 blockd -> file: same bytes")
            c.ok(allocated(out_ext) <= src_alloc + SLACK,
                 "nbdcopy -S 0 (holes only from blockd's base:allocation): output is sparse",
                 f"{allocated(out_ext)} allocated, source {src_alloc}")
            out_noext = os.path.join(d, "out-noextents.img")
            fx.run(["nbdcopy", "-S", "0", "--no-extents", b.uri("sparse"), out_noext], timeout=120)
            c.eq(sha256_file(out_noext), src_sum, "nbdcopy -S 0 --no-extents: same bytes")
            c.ok(allocated(out_noext) >= SIZE - SLACK,
                 "control: without extents and zero detection the output is fully allocated",
                 f"{allocated(out_noext)} allocated")

            fx.run(["nbdcopy", "--flush", b.uri("sparse"), b.uri("mem")], timeout=120)
            print(f"$ nbdcopy {b.uri('mem')} -", flush=True)
            env = dict(os.environ, PATH=fx.SYSTEM_PATH + ":" + os.environ.get("PATH", ""))
            r = subprocess.run(["nbdcopy", b.uri("mem"), "-"], capture_output=True, timeout=120,
                               env=env)
            c.eq(r.returncode, 0, "nbdcopy blockd(mem) -> stdout exits 0")
            c.eq(hashlib.sha256(r.stdout).hexdigest(), src_sum,
                 "nbdcopy blockd(file) -> blockd(mem) -> stdout: same bytes")

            rc = b.stop()
            c.eq(rc, 0, "blockd exits 0 on SIGTERM")


if __name__ == "__main__":
    fx.test_main(body, timeout=180)
