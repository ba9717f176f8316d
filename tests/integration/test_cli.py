#!/usr/bin/env python3
"""blockd's command line and listeners: IPv4, IPv6, Unix sockets, port 0, several
listeners at once, and every bad argument refused with a message and exit code 2
(or 1 for a volume that cannot be opened), without leaving a process behind."""
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    if not ok:
        failures.append(name)


def nbdinfo_size(uri):
    out = subprocess.run(["nbdinfo", "--size", uri], capture_output=True, text=True, timeout=30)
    return int(out.stdout.strip()) if out.returncode == 0 else f"rc={out.returncode} {out.stderr.strip()}"


_STATE = fx.temp_dir("blockd-cli-state-")


def run_blockd(args, timeout=20):
    # A private state directory and control socket: never the node's own.
    base = [] if "--state-dir" in args else ["--state-dir", _STATE.name]
    base += ["--control-socket", os.path.join(_STATE.name, "control.sock")]
    return subprocess.run([fx.blockd_bin()] + base + args, capture_output=True, text=True, timeout=timeout)


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def main():
    os.environ["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", "")
    with fx.temp_dir() as d:
        image = os.path.join(d, "a.img")
        sock = os.path.join(d, "nbd.sock")
        listen = ["127.0.0.1:0", f"unix:{sock}"]
        have_v6 = ipv6_loopback()
        if have_v6:
            listen.append("[::1]:0")
        server = fx.Blockd([f"name=a,path={image},size=1MiB"], listen=listen)
        with server:
            addrs = server.addresses
            check("one 'listening' line per listener", len(addrs) == len(listen), addrs)
            v4 = [a for a in addrs if a.startswith("127.0.0.1:")]
            check("port 0 was replaced by a real port", v4 and not v4[0].endswith(":0"), addrs)
            # One holder for every listener (export name "a?holder=cli", '?' escaped in a
            # URI): by default the holder is the client's address, and 127.0.0.1, "unix"
            # and ::1 would be three holders competing for one write lease.
            check("IPv4 listener serves", nbdinfo_size(server.uri("a%3Fholder=cli")) == 1 << 20)
            check("Unix listener serves", f"unix:{sock}" in addrs and
                  nbdinfo_size(f"nbd+unix:///a%3Fholder=cli?socket={sock}") == 1 << 20, addrs)
            if have_v6:
                v6 = [a for a in addrs if a.startswith("[::1]:")]
                port = v6[0].rsplit(":", 1)[1] if v6 else "0"
                check("IPv6 listener serves", nbdinfo_size(f"nbd://[::1]:{port}/a%3Fholder=cli") == 1 << 20, addrs)
            else:
                print("skip IPv6: no ::1 on this host")
            check("file created sparse with the given size", os.stat(image).st_size == 1 << 20 and
                  os.stat(image).st_blocks == 0, os.stat(image))
        check("blockd exits 0 on SIGTERM", server.proc.returncode == 0, server.proc.returncode)
        check("the Unix socket file is removed at exit", not os.path.exists(sock))

        bad_toml = os.path.join(d, "bad.toml")
        with open(bad_toml, "w") as f:
            f.write('workers = 2\nlisen = ["127.0.0.1:0"]\n')
        bad_class = os.path.join(d, "bad-class.toml")
        with open(bad_class, "w") as f:
            f.write('[[storage_class]]\nname = "a"\ndirectory = "/tmp"\nio = "fast"\n')
        bad = [
            (["--volume", "name=Bad_Name,path=/tmp/x"], 2, "name"),
            (["--volume", "name=a,path=/tmp/x,size=12parsecs"], 2, "size"),
            (["--volume", "name=a,path=/tmp/x,size=1000"], 2, "multiple of 512"),
            (["--volume", "name=a,colour=blue"], 2, "unknown key"),
            (["--volume", "name=a,backend=memory"], 2, "size"),
            (["--volume", "name=a,backend=tape,size=1M"], 2, "backend"),
            (["--volume", "name=a,size=1M"], 2, "path"),
            (["--config", f"{d}/absent.toml"], 3, "absent.toml: cannot read"),
            (["--config", bad_toml], 3, "bad.toml:2:1: unknown key 'lisen'"),
            (["--config", bad_class], 3, "io 'fast' is unknown"),
            (["--control-listen", "unix:/tmp/x"], 2, "TCP address"),
            (["--state-dir", "relative/dir"], 2, "absolute"),
            (["--volume", "name=a,backend=memory,size=1M", "--listen", "localhost"], 2, "port"),
            (["--volume", "name=a,backend=memory,size=1M", "--listen", "example.com:10809"], 2, "not an IPv4"),
            (["--volume", "name=a,backend=memory,size=1M", "--listen", "127.0.0.1:99999"], 2, "port"),
            (["--volume", "name=a,backend=memory,size=1M", "--workers", "lots"], 2, "workers"),
            (["--volume", "name=a,backend=memory,size=1M", "--log-level", "chatty"], 2, "log-level"),
            (["--bogus-flag"], 2, "bogus"),
            (["--listen", "127.0.0.1:0", "--volume", f"name=a,path={d}/missing.img"], 1, "size="),
            (["--listen", "127.0.0.1:0", "--volume", f"name=a,path={d}"], 1, "directory"),
            (["--listen", "127.0.0.1:0", "--volume", "name=a,backend=memory,size=1M",
              "--volume", "name=a,backend=memory,size=1M"], 2, "used twice"),
        ]
        for args, code, needle in bad:
            r = run_blockd(args)
            text = r.stdout + r.stderr
            check(f"refused {args!r} with exit {code} and a message about '{needle}'",
                  r.returncode == code and needle.lower() in text.lower(),
                  f"rc={r.returncode} output={text.strip()[:300]!r}")

        # An address already in use: exit 1 and say which address.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            r = run_blockd(["--listen", f"127.0.0.1:{port}", "--volume", "name=a,backend=memory,size=1M"])
            check("address in use: exit 1 naming the address",
                  r.returncode == 1 and f"127.0.0.1:{port}" in r.stderr, (r.returncode, r.stderr))

        # --max-connections: the third client is closed at once, the first two are served,
        # and once one leaves a new client is served again.
        limited = fx.Blockd(["name=m,backend=memory,size=1MiB"], extra=["--max-connections", "2"])
        with limited:
            def greeting(sock):
                sock.settimeout(10)
                data = b""
                try:
                    while len(data) < 18:
                        chunk = sock.recv(18 - len(data))
                        if not chunk:
                            break
                        data += chunk
                except (ConnectionResetError, socket.timeout):
                    pass
                return data
            first = socket.create_connection(("127.0.0.1", limited.port))
            second = socket.create_connection(("127.0.0.1", limited.port))
            ok_first = greeting(first)[:8] == b"NBDMAGIC" and greeting(second)[:8] == b"NBDMAGIC"
            third = socket.create_connection(("127.0.0.1", limited.port))
            check("max-connections: two clients greeted", ok_first)
            check("max-connections: the third is closed without a greeting", greeting(third) == b"")
            third.close()
            first.close()
            fx_deadline = fx.deadline(10)
            served = False
            while fx_deadline() and not served:
                fourth = socket.create_connection(("127.0.0.1", limited.port))
                served = greeting(fourth)[:8] == b"NBDMAGIC"
                fourth.close()
            check("max-connections: a slot freed is served again", served)
            second.close()
            # The fixture reads blockd's stderr on its own thread: give it time to catch up.
            check("max-connections: the refusal is logged",
                  fx.wait_until(lambda: "max-connections=2 reached" in limited.log, 10), limited.log[-500:])

        r = run_blockd(["--help"])
        check("--help exits 0 and documents --volume", r.returncode == 0 and "--volume" in r.stdout, r.returncode)

    if failures:
        print(f"FAILED: {len(failures)} checks: {failures}")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
