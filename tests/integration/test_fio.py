#!/usr/bin/env python3
"""fio's nbd engine judges blockd under concurrent, verified I/O.

  1. randwrite with verify=crc32c: 4 jobs at once (numjobs=4, each its own NBD
     connection and its own 8 MiB region), iodepth 32, mixed block sizes; every
     block is written then read back and checked by fio;
  2. a second fio run with verify_only=1 (new connections) re-reads and checks
     every block: the data outlived the connections that wrote it;
  3. negative control: one block is overwritten behind fio's back, and the
     verify_only run must now report an error (so this test can fail).
JSON output is parsed: per job error == 0, exact byte counts written and verified.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

fx.use_system_python()
import json  # noqa: E402

MiB = 1 << 20
JOBS = 4
REGION = 8 * MiB


def fio(c, d, uri, name, extra, expect_ok=True):
    out = os.path.join(d, f"{name}.json")
    args = ["fio", "--output-format=json", f"--output={out}",
            f"--name={name}", "--ioengine=nbd", f"--uri={uri}",
            "--rw=randwrite", "--bsrange=4k-64k", "--bs_unaligned=0", "--blockalign=4k",
            "--iodepth=32", f"--size={REGION}", f"--offset_increment={REGION}",
            f"--numjobs={JOBS}", "--verify=crc32c", "--verify_fatal=1",
            "--verify_state_save=0", "--randrepeat=1", "--randseed=1234",
            "--runtime=60", "--group_reporting=0", *extra]
    r = fx.run(args, timeout=150, check=False, cwd=d)
    try:
        with open(out) as f:
            text = f.read()
        # fio may print notes before the JSON object
        data = json.loads(text[text.index("{"):])
    except (OSError, ValueError) as e:
        if expect_ok:
            raise fx.TestFailure(f"fio {name}: no JSON output ({e}); rc={r.returncode}\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r, None
    if expect_ok and r.returncode != 0:
        print(r.stdout + r.stderr)
    return r, data


def body(c):
    fx.require_tools("fio")
    r = fx.run(["fio", "--enghelp"], check=False)
    if "nbd" not in r.stdout.split():
        fx.skip("this fio has no nbd ioengine")
    import nbd

    with fx.temp_dir() as d:
        disk = os.path.join(d, "disk.img")
        with fx.Blockd([f"name=disk,path={disk},size=64MiB"]) as b:
            uri = b.uri("disk")

            r, data = fio(c, d, uri, "write-verify", [])
            c.eq(r.returncode, 0, "fio randwrite+verify exits 0")
            jobs = data.get("jobs", [])
            c.eq(len(jobs), JOBS, "fio ran 4 jobs (4 connections at once)")
            for j in jobs:
                jn = f"job {j.get('jobname')}#{jobs.index(j)}"
                c.eq(j.get("error"), 0, f"{jn}: error == 0")
                c.eq(j["write"]["io_bytes"], REGION, f"{jn}: wrote its whole 8 MiB region")
                c.eq(j["read"]["io_bytes"], REGION, f"{jn}: verified (read back) 8 MiB")
            print(f"     (write IOPS per job: {[round(j['write']['iops']) for j in jobs]})")

            r, data = fio(c, d, uri, "verify-only", ["--verify_only=1"])
            c.eq(r.returncode, 0, "fio verify_only on new connections exits 0")
            jobs = data.get("jobs", [])
            c.eq(len(jobs), JOBS, "verify_only ran 4 jobs")
            for i, j in enumerate(jobs):
                c.eq(j.get("error"), 0, f"verify_only job {i}: error == 0")
                c.eq(j["read"]["io_bytes"], REGION, f"verify_only job {i}: verified 8 MiB")

            # negative control: corrupt one block in job 2's region
            h = nbd.NBD()
            h.connect_uri(uri)
            h.pwrite(os.urandom(4096), 2 * REGION + 1 * MiB)
            h.flush()
            h.shutdown()
            del h
            r, data = fio(c, d, uri, "verify-corrupt", ["--verify_only=1"], expect_ok=False)
            errs = [j.get("error") for j in (data or {}).get("jobs", [])]
            c.ok(r.returncode != 0 and any(errs),
                 "negative control: fio verify detects a block changed behind its back",
                 f"rc={r.returncode} job errors={errs}")

            rc = b.stop()
            c.eq(rc, 0, "blockd exits 0 on SIGTERM")


if __name__ == "__main__":
    fx.test_main(body, timeout=240)
