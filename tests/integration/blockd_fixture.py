"""Start a real blockd for a test, find its port, stop it by PID.

Every integration test imports this module. It never touches a process it did
not start, and every wait is bounded.

Environment:
  BLOCKD_BIN   path to the blockd binary (default: build/server/blockd under the
               repository root).
"""
import faulthandler
import http.client
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SKIP = 77  # ctest SKIP_RETURN_CODE


def blockd_bin():
    return os.environ.get("BLOCKD_BIN", os.path.join(REPO, "build", "server", "blockd"))


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Blockd:
    """A blockd process serving the given volumes on 127.0.0.1 (port chosen by blockd).

    volumes: list of --volume specs, e.g. "name=disk,path=/tmp/d.img,size=64MiB".
    extra:   further command-line arguments.
    """

    _LISTEN = re.compile(r"\[server\] listening address=(\S+)")

    def __init__(self, volumes=(), extra=(), listen=("127.0.0.1:0",), start_timeout=20.0,
                 state_dir=None, control_socket=None):
        # Never the node's own /var/lib/blockd or /run/blockd: a test gets its own state
        # directory (kept across restarts when the caller passes the same one) and
        # control socket.
        if state_dir is None:
            self._state_tmp = temp_dir("blockd-state-")
            state_dir = self._state_tmp.name
        self.state_dir = state_dir
        self.control_socket = control_socket or os.path.join(state_dir, "control.sock")
        self.args = [blockd_bin(), "--state-dir", self.state_dir,
                     "--control-socket", self.control_socket]
        for address in listen:
            self.args += ["--listen", address]
        for spec in volumes:
            self.args += ["--volume", spec]
        self.args += list(extra)
        self.start_timeout = start_timeout
        self.proc = None
        self.addresses = []
        self._log = []
        self._log_lock = threading.Lock()
        self._ready = threading.Event()

    # --- lifecycle -------------------------------------------------------
    def start(self):
        if not os.access(self.args[0], os.X_OK):
            raise TestFailure(f"blockd binary not found or not executable: {self.args[0]} "
                              "(build it first, or set BLOCKD_BIN)")
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        _started.append(self)
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(self.start_timeout):
            self.kill()
            raise RuntimeError("blockd did not become ready; log:\n" + self.log)
        if self.proc.poll() is not None:
            raise RuntimeError(f"blockd exited with {self.proc.returncode}; log:\n" + self.log)
        return self

    def _pump(self):
        for line in self.proc.stdout:
            with self._log_lock:
                self._log.append(line)
            if os.environ.get("BLOCKD_TEST_VERBOSE"):
                sys.stderr.write("[blockd] " + line)
            m = self._LISTEN.search(line)
            if m:
                self.addresses.append(m.group(1))
            if "blockd ready" in line:
                self._ready.set()
        self._ready.set()

    def stop(self, timeout=30.0):
        """SIGTERM, wait, return the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError("blockd did not exit within %ss of SIGTERM" % timeout)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self.kill()

    # --- addresses -------------------------------------------------------
    @property
    def log(self):
        with self._log_lock:
            return "".join(self._log)

    @property
    def port(self):
        for a in self.addresses:
            if not a.startswith("unix:"):
                return int(a.rsplit(":", 1)[1])
        raise RuntimeError("blockd has no TCP listener")

    @property
    def host(self):
        for a in self.addresses:
            if not a.startswith("unix:"):
                return a.rsplit(":", 1)[0].strip("[]")
        raise RuntimeError("blockd has no TCP listener")

    def uri(self, export=""):
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"nbd://{host}:{self.port}/{export}"


def temp_dir(prefix="blockd-test-"):
    d = tempfile.TemporaryDirectory(prefix=prefix)
    _temp_dirs.append(d.name)   # so the watchdog can remove it too
    return d


def deadline(seconds):
    end = time.monotonic() + seconds
    return lambda: time.monotonic() < end


def wait_until(condition, seconds):
    """Poll condition() every 50 ms until it holds or `seconds` have passed; its last value.

    For what another thread or process will do soon: a log line the reader thread has
    not read yet, a socket a child has not created yet."""
    wait = deadline(seconds)
    while wait() and not condition():
        time.sleep(0.05)
    return condition()


# --- helpers for the test scripts --------------------------------------------
# Everything below is optional sugar used by tests/integration/test_*.py; the
# Blockd API above is unchanged (start() additionally remembers the instance so
# a watchdog can kill exactly the processes this test started).

_started = []          # Blockd instances started by this process
_on_timeout = []       # cleanup callables run by the watchdog before it exits
_temp_dirs = []        # temp_dir() paths, removed by the watchdog (no mounts inside)

SYSTEM_PYTHON = "/usr/bin/python3"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over blockd's control socket (a Unix socket), e.g. conn.request("GET", "/v1/volumes")."""

    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class TestFailure(Exception):
    """A check failed; the message says what was expected and what happened."""


def use_system_python():
    """Re-exec under Debian's /usr/bin/python3 (the one with the `nbd` module).

    A pyenv python3 may come first in PATH; it has no python3-libnbd."""
    if os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON) and \
            os.environ.get("BLOCKD_TEST_REEXEC") != "1" and os.access(SYSTEM_PYTHON, os.X_OK):
        os.environ["BLOCKD_TEST_REEXEC"] = "1"
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv)
    os.environ["PATH"] = SYSTEM_PATH + ":" + os.environ.get("PATH", "")


def import_libnbd():
    """Debian's python3 (use_system_python) and its python3-libnbd: the `nbd` module, or
    skip (77) when it is not installed."""
    use_system_python()
    try:
        import nbd
    except ImportError:
        skip("python3-libnbd (import nbd) is not available")
    return nbd


def require_tools(*names):
    """Skip (77) if a required external program is missing."""
    for name in names:
        if shutil.which(name, path=SYSTEM_PATH) is None:
            skip(f"{name} is not installed")


def run(cmd, timeout=120, check=True, **kw):
    """Run a command (list), print it, capture output, bounded by timeout.

    With check=True a non-zero exit raises TestFailure including the output."""
    print("$ " + " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    env = dict(os.environ)
    env["PATH"] = SYSTEM_PATH + ":" + env.get("PATH", "")
    try:
        r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                           timeout=timeout, env=env, **kw)
    except subprocess.TimeoutExpired as e:
        raise TestFailure(f"command timed out after {timeout}s: {cmd}\n"
                          f"stdout: {e.stdout}\nstderr: {e.stderr}")
    if check and r.returncode != 0:
        raise TestFailure(f"command failed with exit code {r.returncode}: {cmd}\n"
                          f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r


class Checks:
    """Prints every check; remembers failures so one run reports all of them."""

    def __init__(self):
        self.failures = []
        self.count = 0

    def ok(self, cond, what, detail=None):
        self.count += 1
        if cond:
            print(f"ok   {what}", flush=True)
        else:
            msg = what + (f": {detail}" if detail else "")
            print(f"FAIL {msg}", flush=True)
            self.failures.append(msg)
        return bool(cond)

    def eq(self, actual, expected, what):
        return self.ok(actual == expected, what, f"expected {expected!r}, got {actual!r}")

    def require(self, cond, what, detail=None):
        """Like ok(), but a failure stops the test (later checks depend on it)."""
        if not self.ok(cond, what, detail):
            raise TestFailure(what + (f": {detail}" if detail else ""))


def on_timeout(fn):
    """Register a cleanup callable the watchdog runs before it exits."""
    _on_timeout.append(fn)


def _watchdog_fire(seconds):
    sys.stderr.write(f"\nFAIL: test did not finish within {seconds}s (a request got no reply?)\n")
    faulthandler.dump_traceback(all_threads=True)
    for fn in reversed(_on_timeout):
        try:
            fn()
        except Exception:
            traceback.print_exc()
    for b in _started:
        try:
            if b.proc is not None and b.proc.poll() is None:
                sys.stderr.write("blockd log:\n" + b.log[-4000:] + "\n")
                b.proc.kill()
                b.proc.wait(10)
        except Exception:
            pass
    for d in _temp_dirs:
        try:
            with open("/proc/self/mounts") as f:
                busy = any(line.split()[1].startswith(d.rstrip("/") + "/") for line in f)
            if busy:
                sys.stderr.write(f"leaving {d} in place: something is still mounted inside\n")
            else:
                shutil.rmtree(d, ignore_errors=True)
        except Exception:
            pass
    sys.stderr.flush()
    os._exit(1)


def test_main(body, timeout=120):
    """Run body(checks) with a watchdog; exit 0 pass, 1 fail, 77 skip."""
    timer = threading.Timer(timeout, _watchdog_fire, args=(timeout,))
    timer.daemon = True
    timer.start()
    checks = Checks()
    code = 0
    try:
        body(checks)
    except SystemExit:
        raise
    except TestFailure as e:
        print(f"FAIL: {e}", flush=True)
        code = 1
    except Exception:
        traceback.print_exc()
        print("FAIL: unexpected exception (see traceback above)", flush=True)
        code = 1
    finally:
        timer.cancel()
        for b in _started:
            try:
                b.kill()
            except Exception:
                pass
    if checks.failures or code != 0:
        for b in _started:
            print(f"--- blockd log ({' '.join(b.args)}), last 4000 chars ---\n{b.log[-4000:]}")
    if checks.failures:
        print(f"\n{len(checks.failures)} of {checks.count} checks FAILED:")
        for f in checks.failures:
            print("  - " + f)
        code = 1
    elif code == 0:
        print(f"\nPASS: all {checks.count} checks passed")
    sys.exit(code)
