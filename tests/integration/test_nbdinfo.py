#!/usr/bin/env python3
"""nbdinfo judges what blockd advertises.

Checks, against one blockd serving a file volume, a memory volume and a
read-only file volume:
  * `nbdinfo --json URI` for each export: size, description, flags
    (can_flush, can_fua, can_trim, can_zero, can_fast_zero, can_cache,
    can_multi_conn, can_df, is_read_only), block sizes 512/4096/33554432,
    contexts include base:allocation;
  * export "" is the first declared volume;
  * `nbdinfo --list --json` lists all three with the same answers (INFO == GO);
  * `nbdinfo --map` after writing into a sparse file reports exactly the
    file's real holes/data (as SEEK_HOLE/SEEK_DATA on the backing file say),
    and on the memory volume reports the written ranges as data and
    untouched space as zero.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

fx.use_system_python()
import json  # noqa: E402

MiB = 1 << 20
FILE_SIZE = 64 * MiB
MEM_SIZE = 16 * MiB
RO_SIZE = 8 * MiB
DESCRIPTION = "integration-test-disk"

RW_FLAGS = ["can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero",
            "can_cache", "can_multi_conn", "can_df"]


def nbdinfo_json(*args):
    r = fx.run(["nbdinfo", "--json", *args], timeout=60)
    try:
        return json.loads(r.stdout)
    except ValueError as e:
        raise fx.TestFailure(f"nbdinfo printed invalid JSON ({e}):\n{r.stdout}")


def check_export(c, e, name, size, read_only, description=None):
    label = f"export {name!r}"
    c.eq(e.get("export-size"), size, f"{label}: export-size")
    c.eq(e.get("is_read_only"), read_only, f"{label}: is_read_only")
    if read_only:
        # Flags that make sense on a read-only export must still be advertised.
        for flag in ("can_df", "can_cache", "can_multi_conn"):
            c.eq(e.get(flag), True, f"{label}: {flag}")
        print("     (read-only export also reports: "
              + ", ".join(f"{f}={e.get(f)}" for f in ("can_flush", "can_fua", "can_trim",
                                                      "can_zero", "can_fast_zero")) + ")")
    else:
        for flag in RW_FLAGS:
            c.eq(e.get(flag), True, f"{label}: {flag}")
    c.eq(e.get("block_size_minimum"), 512, f"{label}: block_size_minimum")
    c.eq(e.get("block_size_preferred"), 4096, f"{label}: block_size_preferred")
    c.eq(e.get("block_size_maximum"), 33554432, f"{label}: block_size_maximum")
    contexts = e.get("contexts") or []
    c.ok("base:allocation" in contexts, f"{label}: contexts include base:allocation",
         f"contexts={contexts!r}")
    if description is not None:
        c.eq(e.get("description"), description, f"{label}: description")


def file_extents(path):
    """[(start, end, is_hole)] of a file from SEEK_DATA/SEEK_HOLE, merged."""
    out = []
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole until EOF
                data = size
            if data > pos:
                out.append((pos, data, True))
            if data >= size:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            out.append((data, hole, False))
            pos = hole
    finally:
        os.close(fd)
    return out


def map_extents(entries):
    """nbdinfo --map --json entries -> merged [(start, end, is_hole)]; also returns raw types."""
    out = []
    for ent in entries:
        start, length, typ = ent["offset"], ent["length"], ent["type"]
        hole = bool(typ & 1)
        if out and out[-1][2] == hole and out[-1][1] == start:
            out[-1] = (out[-1][0], start + length, hole)
        else:
            out.append((start, start + length, hole))
    return out


def covers(entries, size):
    pos = 0
    for ent in entries:
        if ent["offset"] != pos or ent["length"] <= 0:
            return False, f"gap/overlap at {pos}: next entry {ent}"
        pos += ent["length"]
    return pos == size, f"map ends at {pos}, export size {size}"


def type_at(entries, offset):
    for ent in entries:
        if ent["offset"] <= offset < ent["offset"] + ent["length"]:
            return ent["type"]
    return None


def body(c):
    fx.require_tools("nbdinfo")
    import nbd

    with fx.temp_dir() as d:
        disk = os.path.join(d, "disk.img")
        ro = os.path.join(d, "ro.img")
        with open(ro, "wb") as f:           # a read-only volume with known content
            f.write(b"\xa5" * RO_SIZE)
        volumes = [
            f"name=disk,path={disk},size=64MiB,description={DESCRIPTION}",
            "name=mem,backend=memory,size=16MiB",
            f"name=ro,path={ro},read-only",
        ]
        with fx.Blockd(volumes) as b:
            print(f"blockd listening on {b.uri()}")
            c.ok(os.path.exists(disk), "file volume created by blockd")
            if os.path.exists(disk):
                st = os.stat(disk)
                c.eq(st.st_size, FILE_SIZE, "created file has the volume size")
                c.ok(st.st_blocks * 512 <= 1 * MiB, "created file is sparse",
                     f"st_blocks={st.st_blocks}")

            # --- nbdinfo --json per export ------------------------------------
            expect = {"disk": (FILE_SIZE, False, DESCRIPTION),
                      "mem": (MEM_SIZE, False, None),
                      "ro": (RO_SIZE, True, None)}
            for name, (size, read_only, desc) in expect.items():
                j = nbdinfo_json(b.uri(name))
                c.eq(j.get("protocol"), "newstyle-fixed", f"{name}: protocol")
                c.eq(j.get("structured"), True, f"{name}: structured replies")
                exports = j.get("exports") or []
                c.require(len(exports) == 1, f"{name}: nbdinfo --json shows one export",
                          f"got {len(exports)}")
                check_export(c, exports[0], name, size, read_only, desc)

            # export "" is the first declared volume
            j = nbdinfo_json(b.uri(""))
            e = (j.get("exports") or [{}])[0]
            c.eq(e.get("export-size"), FILE_SIZE, "export '': size of first volume (disk)")
            c.ok(e.get("export-name") in ("", "disk"), "export '': name is '' or canonical 'disk'",
                 f"export-name={e.get('export-name')!r}")
            c.eq(e.get("description"), DESCRIPTION, "export '': description of first volume")

            # --- nbdinfo --list --json ----------------------------------------
            j = nbdinfo_json("--list", b.uri())
            listed = {e.get("export-name"): e for e in j.get("exports") or []}
            c.eq(sorted(listed), ["disk", "mem", "ro"], "--list shows exactly the three volumes")
            for name, (size, read_only, desc) in expect.items():
                if name in listed:
                    check_export(c, listed[name], f"{name} (--list)", size, read_only, desc)

            # --- nbdinfo --map on a sparse file after writes --------------------
            writes = [(1 * MiB, 64 * 1024), (10 * MiB, 4096), (33 * MiB + 512 * 1024, 2 * MiB),
                      (FILE_SIZE - 4096, 4096)]
            for vol in ("disk", "mem"):
                h = nbd.NBD()
                h.connect_uri(b.uri(vol))
                for off, ln in writes:
                    if off + ln <= h.get_size():
                        h.pwrite(os.urandom(ln), off)
                h.flush()
                h.shutdown()
                del h

            r = fx.run(["nbdinfo", "--map", b.uri("disk")], timeout=60)
            print(r.stdout.rstrip())
            r = fx.run(["nbdinfo", "--map", "--json", b.uri("disk")], timeout=60)
            entries = json.loads(r.stdout)
            good, why = covers(entries, FILE_SIZE)
            c.ok(good, "disk: --map covers the export exactly once", why)
            for off, ln in writes:
                for probe in (off, off + ln - 1):
                    t = type_at(entries, probe)
                    c.ok(t is not None and (t & 1) == 0,
                         f"disk: written byte {probe} is reported as data", f"type={t}")
            for probe in (0, 5 * MiB, 20 * MiB, 50 * MiB):
                t = type_at(entries, probe)
                c.eq(t, 3, f"disk: untouched offset {probe} is reported as hole,zero")
            want = file_extents(disk)
            got = map_extents(entries)
            c.eq(got, want, "disk: holes/data of --map == SEEK_HOLE/SEEK_DATA of the backing file")

            r = fx.run(["nbdinfo", "--map", "--json", b.uri("mem")], timeout=60)
            entries = json.loads(r.stdout)
            print("mem map:", [(e["offset"], e["length"], e["type"]) for e in entries])
            good, why = covers(entries, MEM_SIZE)
            c.ok(good, "mem: --map covers the export exactly once", why)
            for off, ln in writes:
                if off + ln > MEM_SIZE:
                    continue
                for probe in (off, off + ln - 1):
                    t = type_at(entries, probe)
                    c.ok(t is not None and (t & 2) == 0,
                         f"mem: written byte {probe} is not reported as zero", f"type={t}")
            for probe in (12 * MiB, 14 * MiB, MEM_SIZE - 1):
                t = type_at(entries, probe)
                c.ok(t is not None and (t & 2) != 0,
                     f"mem: untouched offset {probe} is reported as zero", f"type={t}")
            data_bytes = sum(e["length"] for e in entries if not (e["type"] & 1))
            c.ok(data_bytes < MEM_SIZE // 2, "mem: most of the volume is reported as hole",
                 f"{data_bytes} bytes reported as data")

            rc = b.stop()
            c.eq(rc, 0, "blockd exits 0 on SIGTERM")


if __name__ == "__main__":
    fx.test_main(body, timeout=120)
