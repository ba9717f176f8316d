#!/usr/bin/env python3
"""blockd under systemd's protocols, without systemd itself:

  * sd_notify: started with a test NOTIFY_SOCKET, blockd sends READY=1 only once it
    accepts NBD connections (checked the moment READY=1 arrives), STATUS= lines, and
    WATCHDOG=1 heartbeats (WATCHDOG_USEC) that keep coming; when a worker is made to
    hang (the BLOCKD_TEST_HOOKS SIGUSR1 hook) the heartbeats stop and the log names
    the worker; SIGTERM sends STOPPING=1.
  * socket activation with systemd-socket-activate: a client that connects before
    blockd has started is served once it has; blockd killed and started again behind
    the same sockets serves a client's reconnect; the control socket comes from the
    activator too.
  * SIGHUP: a changed config (log level, a new storage class) applies, an invalid one
    is refused with a log line and changes nothing; an open NBD connection survives
    both.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

fx.use_system_python()
import nbd  # noqa: E402


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET; records every state."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic time, text)
        self.on_ready = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode(errors="replace")
            self.messages.append((time.monotonic(), text))
            if "READY=1" in text and self.on_ready:
                self.on_ready()
                self.on_ready = None

    def count(self, needle, since=0.0):
        return sum(1 for t, m in self.messages if needle in m and t >= since)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def greeted(host, port, timeout=10):
    """True when a connection is accepted and blockd's greeting arrives; else the error."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            data = b""
            while len(data) < 8:
                chunk = s.recv(8 - len(data))
                if not chunk:
                    break
                data += chunk
            return True if data == b"NBDMAGIC" else f"greeting {data!r}"
    except OSError as e:
        return repr(e)


def check_notify(c, d):
    port = fx.free_port()
    notify = NotifySocket(os.path.join(d, "notify.sock"))
    ready_serves = []
    notify.on_ready = lambda: ready_serves.append(greeted("127.0.0.1", port))
    env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="400000", BLOCKD_TEST_HOOKS="1")
    state = os.path.join(d, "state-notify")
    proc = subprocess.Popen([fx.blockd_bin(), "--state-dir", state, "--control-socket", os.path.join(state, "c.sock"),
                             "--listen", f"127.0.0.1:{port}", "--volume", "name=m,backend=memory,size=1MiB"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fx.on_timeout(proc.kill)
    log = []
    threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True).start()
    try:
        wait = fx.deadline(20)
        while wait() and notify.count("READY=1") == 0:
            time.sleep(0.05)
        # The check runs in the notify thread the moment READY=1 arrives; wait for it.
        while wait() and not ready_serves:
            time.sleep(0.05)
        c.eq(notify.count("READY=1"), 1, "READY=1 is sent once")
        c.ok(ready_serves == [True], "when READY=1 arrives, blockd already accepts NBD connections", ready_serves)
        ready_text = [m for _, m in notify.messages if "READY=1" in m]
        c.ok(ready_text and "STATUS=serving 1 volume(s)" in ready_text[0], "READY=1 comes with a STATUS= line",
             ready_text)
        time.sleep(1.5)
        beats = notify.count("WATCHDOG=1")
        c.ok(beats >= 4, f"WATCHDOG=1 keeps coming ({beats} in 1.5 s at a 0.4 s WatchdogSec)", beats)
        proc.send_signal(signal.SIGUSR1)  # test hook: worker 0 hangs
        time.sleep(0.6)
        after = time.monotonic()
        time.sleep(1.5)
        c.eq(notify.count("WATCHDOG=1", since=after), 0, "a hung worker stops the heartbeat")
        c.ok(any("worker 0 has not run its event loop" in line for line in log),
             "the log names the stuck worker", "".join(log)[-600:])
    finally:
        proc.kill()
        proc.wait(10)

    # STOPPING=1 on SIGTERM (a healthy run).
    env = dict(os.environ, NOTIFY_SOCKET=notify.path)
    proc = subprocess.Popen([fx.blockd_bin(), "--state-dir", state, "--control-socket", os.path.join(state, "c.sock"),
                             "--listen", "127.0.0.1:0", "--volume", "name=m,backend=memory,size=1MiB"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fx.on_timeout(proc.kill)
    before = time.monotonic()
    fx.wait_until(lambda: notify.count("READY=1", since=before) > 0, 20)
    proc.send_signal(signal.SIGTERM)
    c.eq(proc.wait(30), 0, "blockd exits 0 on SIGTERM")
    c.ok(notify.count("STOPPING=1", since=before) == 1, "STOPPING=1 on SIGTERM")
    notify.close()


def check_socket_activation(c, d):
    port = fx.free_port()
    control = os.path.join(d, "activated-control.sock")
    state = os.path.join(d, "state-activated")
    cmd = ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "-l", control, "--fdname=nbd:control",
           fx.blockd_bin(), "--state-dir", state, "--control-socket", os.path.join(state, "unused.sock"),
           "--volume", "name=m,backend=memory,size=1MiB"]
    # systemd-socket-activate listens at once and starts blockd at the first connection.
    activator = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fx.on_timeout(activator.kill)
    log = []
    threading.Thread(target=lambda: log.extend(activator.stdout), daemon=True).start()
    try:
        fx.wait_until(lambda: os.path.exists(control), 10)
        # The client connects before blockd runs; it is served once blockd has started.
        h = nbd.NBD()
        h.connect_uri(f"nbd://127.0.0.1:{port}/m")
        h.pwrite(b"s" * 512, 0)
        c.ok(h.pread(512, 0) == b"s" * 512, "a client that connected before blockd started is served")
        h.shutdown()
        # The reader thread may not have caught up with blockd's log yet.
        c.ok(fx.wait_until(lambda: any("socket-activated" in line for line in log), 10),
             "blockd says it uses the activated sockets",
             "".join(log)[-400:])
        r = subprocess.run(["curl", "-sS", "--max-time", "10", "--unix-socket", control, "http://localhost/v1/status"],
                           capture_output=True, text=True, timeout=30)
        c.ok(r.returncode == 0 and f"127.0.0.1:{port}" in r.stdout, "the control API answers on the activated socket",
             r.stdout + r.stderr)
        c.ok(not os.path.exists(os.path.join(state, "unused.sock")), "blockd did not bind its own control socket")
    finally:
        activator.kill()
        activator.wait(10)

    # Restart behind the same sockets: a socket held by the activator (as systemd holds
    # blockd.socket's) queues a reconnect while blockd is gone.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    args = [fx.blockd_bin(), "--state-dir", state, "--control-socket", os.path.join(state, "c2.sock"),
            "--volume", "name=m,backend=memory,size=1MiB"]
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="nbd")

    def start_with_pid():
        # LISTEN_PID must be blockd's own PID: set it in the child just before exec.
        return subprocess.Popen(["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh"] + args, env=env, pass_fds=(3,),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=lambda: os.dup2(listener.fileno(), 3))

    first = start_with_pid()
    fx.on_timeout(first.kill)
    c.ok(wait_greeting(port), "blockd serves the socket passed in LISTEN_FDS")
    first.kill()
    first.wait(10)
    # blockd is dead; the socket still accepts (the kernel queues the connection).
    pending = socket.create_connection(("127.0.0.1", port), timeout=10)
    second = start_with_pid()
    fx.on_timeout(second.kill)
    pending.settimeout(20)
    try:
        got = pending.recv(8)
    except OSError as e:
        got = repr(e)
    c.eq(got, b"NBDMAGIC", "a connection made while blockd was down is served once it is back")
    pending.close()
    second.send_signal(signal.SIGTERM)
    c.eq(second.wait(30), 0, "the restarted blockd exits 0")
    listener.close()


def wait_greeting(port, seconds=20):
    wait = fx.deadline(seconds)
    while wait():
        if greeted("127.0.0.1", port) is True:
            return True
        time.sleep(0.1)
    return False


def check_reload(c, d):
    config = os.path.join(d, "reload.toml")
    extra_dir = os.path.join(d, "extra-class")
    os.makedirs(extra_dir)
    with open(config, "w") as f:
        f.write('log_level = "info"\n')
    with fx.Blockd(["name=m,backend=memory,size=1MiB"], extra=["--config", config]) as b:
        h = nbd.NBD()
        h.connect_uri(b.uri("m"))
        h.pwrite(b"1" * 512, 0)

        def classes():
            r = subprocess.run(["curl", "-sS", "--unix-socket", b.control_socket,
                                "http://localhost/v1/storage-classes"], capture_output=True, text=True, timeout=30)
            return [x["name"] for x in json.loads(r.stdout)["storageClasses"]]

        c.eq(classes(), ["default"], "before the reload: the fallback class")
        with open(config, "w") as f:
            f.write(f'log_level = "debug"\n[[storage_class]]\nname = "extra"\ndirectory = "{extra_dir}"\n')
        b.proc.send_signal(signal.SIGHUP)
        fx.wait_until(lambda: "SIGHUP: reloaded" in b.log, 10)
        c.ok("SIGHUP: reloaded" in b.log and "log_level=debug" in b.log, "SIGHUP applies a changed config",
             b.log[-500:])
        c.eq(classes(), ["extra"], "the new storage class is served by the API")
        h.pwrite(b"2" * 512, 512)
        c.ok(h.pread(1024, 0) == b"1" * 512 + b"2" * 512, "the open connection survives the reload")
        with open(config, "w") as f:
            f.write('log_level = "chatty"\n')
        b.proc.send_signal(signal.SIGHUP)
        fx.wait_until(lambda: "reload refused" in b.log, 10)
        c.ok(re.search(r"SIGHUP: reload refused, nothing changed: .*reload\.toml:1:\d+: log_level 'chatty'", b.log),
             "an invalid config is refused with the file, line and reason", b.log[-500:])
        c.eq(classes(), ["extra"], "the refused reload changed nothing")
        h.pwrite(b"3" * 512, 1024)
        c.ok(h.pread(512, 1024) == b"3" * 512, "the open connection survives the refused reload")
        h.shutdown()


def body(c):
    fx.require_tools("systemd-socket-activate", "curl")
    with fx.temp_dir() as d:
        check_notify(c, d)
        check_socket_activation(c, d)
        check_reload(c, d)


if __name__ == "__main__":
    fx.test_main(body, timeout=240)
