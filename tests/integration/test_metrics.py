#!/usr/bin/env python3
"""/metrics: Prometheus text format, validated by `promtool check metrics` (Debian's
prometheus package), and its counters move by exactly what a known libnbd workload did:
requests and bytes per operation, errors by NBD error, the latency histogram's count,
connections, the lease holder and generation; a fio run moves them too. The optional
--metrics-listen TCP address serves /metrics, /healthz and /readyz and nothing else.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

fx.use_system_python()
import nbd  # noqa: E402

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def scrape(b):
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--unix-socket", b.control_socket,
                        "http://localhost/metrics", "-w", "\n%{content_type}"], capture_output=True, text=True,
                       timeout=30)
    text, _, content_type = r.stdout.rpartition("\n")
    return text + "\n", content_type


def parse(text):
    """{(name, frozenset(labels)): value}"""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise fx.TestFailure(f"not a sample line: {line!r}")
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def promtool_ok(c, text, what):
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    c.ok(r.returncode == 0, f"promtool check metrics accepts {what}", (r.stdout + r.stderr)[-800:])


def body(c):
    fx.require_tools("curl", "promtool", "fio")
    with fx.Blockd(["name=m,backend=memory,size=16MiB"], extra=["--metrics-listen", "127.0.0.1:0"]) as b:
        text, content_type = scrape(b)
        c.ok(content_type.startswith("text/plain; version=0.0.4"), "the Prometheus content type", content_type)
        promtool_ok(c, text, "the metrics of an idle blockd")
        before = parse(text)

        h = nbd.NBD()
        h.set_export_name("m?holder=metrics-test")
        h.connect_tcp("127.0.0.1", str(b.port))
        for i in range(10):
            h.pwrite(b"w" * 4096, i * 4096)
        for i in range(7):
            h.pread(8192, i * 8192)
        h.flush()
        h.trim(65536, 0)
        h.set_strict_mode(0)  # let libnbd send what it knows is wrong: blockd must refuse it
        try:
            h.pread(4096, 16 * 1024 * 1024)  # past the end: EINVAL
        except nbd.Error:
            pass
        during = parse(scrape(b)[0])
        c.eq(value(during, "blockd_connections", volume="m"), 1.0, "connections shows the open session")
        c.eq(value(during, "blockd_lease_holder", volume="m", holder="metrics-test", mode="rw"), 1.0,
             "the lease holder is exported")
        c.ok(value(during, "blockd_lease_generation", volume="m") >= 1, "the lease generation is exported")
        h.shutdown()

        text, _ = scrape(b)
        promtool_ok(c, text, "the metrics after a workload")
        after = parse(text)

        def moved(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        c.eq(moved("blockd_requests_total", volume="m", op="write"), 10, "10 writes counted")
        c.eq(moved("blockd_requests_total", volume="m", op="read"), 8, "8 reads counted (one refused)")
        c.eq(moved("blockd_requests_total", volume="m", op="flush"), 1, "1 flush counted")
        c.eq(moved("blockd_requests_total", volume="m", op="trim"), 1, "1 trim counted")
        c.eq(moved("blockd_bytes_total", volume="m", direction="write"), 10 * 4096, "bytes written")
        c.eq(moved("blockd_bytes_total", volume="m", direction="read"), 7 * 8192, "bytes read (the refused read has none)")
        c.eq(moved("blockd_request_errors_total", volume="m", op="read", error="EINVAL"), 1,
             "the read past the end is an EINVAL error")
        c.eq(moved("blockd_request_duration_seconds_count", volume="m", op="write"), 10,
             "the write latency histogram counts every write")
        c.eq(value(after, "blockd_request_duration_seconds_bucket", volume="m", op="write", le="+Inf"),
             value(after, "blockd_request_duration_seconds_count", volume="m", op="write"),
             "the +Inf bucket equals the count")
        c.eq(value(after, "blockd_requests_in_flight", volume="m"), 0, "nothing in flight afterwards")
        c.eq(value(after, "blockd_volume_size_bytes", volume="m"), 16 * 1024 * 1024, "the volume's size")
        c.ok(moved("blockd_uring_submissions_total", worker="0") + moved("blockd_uring_submissions_total", worker="1")
             >= 0, "io_uring submissions are exported")
        c.eq(value(after, "blockd_workers"), float(sum(1 for k in after if k[0] == "blockd_uring_completions_total")),
             "one io_uring counter per worker")

        r = subprocess.run(["fio", "--name=m", "--ioengine=nbd", f"--uri=nbd://127.0.0.1:{b.port}/m%3Fholder=metrics-test",
                            "--rw=randrw", "--bs=4k", "--size=4m", "--io_size=4m", "--iodepth=4",
                            "--output-format=json", f"--output={b.state_dir}/fio.json"],
                           capture_output=True, text=True, timeout=120)
        c.ok(r.returncode == 0, "fio runs", r.stderr[-300:])
        import json
        job = json.load(open(f"{b.state_dir}/fio.json"))["jobs"][0]
        final = parse(scrape(b)[0])
        c.eq(value(final, "blockd_requests_total", volume="m", op="read") - value(after, "blockd_requests_total", volume="m",
                                                                                  op="read"),
             job["read"]["total_ios"], "the read counter moved by fio's reads")
        c.eq(value(final, "blockd_requests_total", volume="m", op="write") - value(after, "blockd_requests_total",
                                                                                   volume="m", op="write"),
             job["write"]["total_ios"], "the write counter moved by fio's writes")

        m = re.search(r"metrics listening address=127\.0\.0\.1:(\d+)", b.log)
        c.require(m, "the metrics listener logs its address", b.log[-400:])
        port = m.group(1)
        r = subprocess.run(["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{port}/metrics"],
                           capture_output=True, text=True, timeout=30)
        c.ok(r.returncode == 0 and "blockd_requests_total" in r.stdout, "/metrics on the TCP metrics listener")
        r = subprocess.run(["curl", "-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
                            f"http://127.0.0.1:{port}/v1/volumes"], capture_output=True, text=True, timeout=30)
        c.eq(r.stdout, "404", "the metrics listener does not serve the volume API")

    registered_buffers(c)


def registered_buffers(c):
    """A file volume's reads and writes go through buffers registered with the ring."""
    with fx.temp_dir() as d, fx.Blockd([f"name=f,path={d}/f.img,size=16MiB"], extra=["--workers", "1"]) as b:
        before = parse(scrape(b)[0])
        h = nbd.NBD()
        h.set_export_name("f")
        h.connect_tcp("127.0.0.1", str(b.port))
        payloads = {i: bytes([i]) * (4096 << (i % 5)) for i in range(20)}  # 4 KiB .. 64 KiB
        for i, data in payloads.items():
            h.pwrite(data, i * 65536)
        wrong = [i for i, data in payloads.items() if h.pread(len(data), i * 65536) != data]
        h.shutdown()
        after = parse(scrape(b)[0])
        c.eq(wrong, [], "20 writes of 4-64 KiB through registered buffers read back intact")
        fixed = value(after, "blockd_uring_fixed_buffer_ios_total", worker="0") - \
            value(before, "blockd_uring_fixed_buffer_ios_total", worker="0")
        c.eq(fixed, 40.0, "every one of the 20 writes and 20 reads used a registered buffer")
        c.ok(value(after, "blockd_uring_registered_buffers", worker="0") >= 5,
             "a registered buffer for each of the 5 sizes", value(after, "blockd_uring_registered_buffers", worker="0"))


if __name__ == "__main__":
    fx.test_main(body, timeout=180)
