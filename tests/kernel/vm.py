"""Boot Debian's cloud kernel under qemu (TCG) with a busybox initramfs and run a test
script inside it, so tests can drive the kernel's real NBD driver (nbd.ko), which the
host kernel does not have. Python 3 standard library only.

    import vm
    r = vm.run_in_vm('''
        step load-nbd modprobe nbd
        step list ls /dev/nbd0
    ''', binaries=['nbd-client'], files={'/usr/bin/blockd': '/path/to/blockd'},
        timeout=300)
    r.results        # [Result(status='ok', name='load-nbd', detail=''), ...]
    r.done           # the script ran to its end (guest printed "RESULT done <rc>")
    r.exit_code      # the script's exit status in the guest (None if it never ended)
    r.boot_seconds   # qemu start -> the guest's /init running
    r.console_text   # the whole serial console (kernel messages, command output, dmesg)

The script is busybox ash; it runs as the payload of /init, as root, in /tmp (a tmpfs),
with lo up, proc/sys/dev mounted and these helpers defined:

    ok NAME                 print "RESULT ok NAME"
    fail NAME DETAIL...     print "RESULT fail NAME DETAIL"
    step NAME CMD [ARG]...  run CMD (its output goes to the console); ok NAME if it exits
                            0, else fail NAME with the exit code and the last output
                            lines; returns CMD's exit code
    note TEXT...            a line on the console, for humans

Result lines travel on a second serial port (ttyS1), which the kernel never writes to,
so kernel messages cannot interleave with them; they are echoed on the console too.

Everything the guest needs is copied in: `binaries` (names looked up on PATH, or paths)
land in /usr/bin/ under their base name; `files` maps guest paths to host paths. Every
ELF file brings its shared libraries (resolved with ldd) and the dynamic loader. Kernel
modules named in `modules` (default: nbd) are copied with their dependencies and a
modules.dep, so `modprobe NAME` works in the guest; modules built into the kernel are
skipped.

The kernel comes from `apt-get download` of the package linux-image-cloud-amd64 depends
on, unpacked once into /var/cache/blockd-tests/kernel/ (BLOCKD_KERNEL_CACHE overrides).
A kernel that cannot be obtained is a failure (KernelUnavailable), never a skip.
QemuUnavailable is raised only when qemu-system-x86_64 is missing and cannot be
installed or does not run at all; `skip_if_no_qemu()` turns that into exit 77.

Environment: BLOCKD_VM_VERBOSE=1 streams the guest console to stderr while it runs;
BLOCKD_VM_KEEP=1 keeps the work dir (initramfs, console.log, results.log) and prints it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import gzip
import lzma
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
DEFAULT_CACHE = "/var/cache/blockd-tests/kernel"
QEMU = "qemu-system-x86_64"
SKIP = 77

# Debian packages the harness needs on the host (also in scripts/install-deps.sh).
HOST_PACKAGES = {QEMU: "qemu-system-x86", "busybox": "busybox-static"}


class VmError(Exception):
    """The harness could not do its job; the test fails."""


class KernelUnavailable(VmError):
    """The kernel package could not be downloaded or unpacked (a failure, not a skip)."""


class QemuUnavailable(Exception):
    """qemu cannot start at all on this machine: the one reason to skip."""


def log(msg: str) -> None:
    print(f"vm: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- kernel


@dataclasses.dataclass
class Kernel:
    """An unpacked linux-image package: vmlinuz, config and module tree."""

    root: Path       # where the .deb was unpacked
    version: str     # e.g. 6.1.0-57-cloud-amd64
    vmlinuz: Path

    @property
    def module_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.version

    def config(self) -> dict[str, str]:
        """The kernel's config-* file: {'CONFIG_EXT4_FS': 'y', ...}."""
        values = {}
        for line in (self.root / "boot" / f"config-{self.version}").read_text().splitlines():
            if line.startswith("CONFIG_") and "=" in line:
                key, value = line.split("=", 1)
                values[key] = value.strip('"')
        return values

    def builtin_modules(self) -> set[str]:
        path = self.module_dir / "modules.builtin"
        if not path.exists():
            return set()
        return {_module_name(line.strip()) for line in path.read_text().splitlines() if line.strip()}

    def module_files(self) -> dict[str, Path]:
        """Module name (underscores) -> its .ko, .ko.xz, .ko.zst or .ko.gz file."""
        found = {}
        for path in (self.module_dir / "kernel").rglob("*.ko*"):
            if re.search(r"\.ko(\.(xz|zst|gz))?$", path.name):
                found[_module_name(path.name)] = path
        return found

    def resolve_modules(self, names) -> list[tuple[str, Path]]:
        """The modules to load for `names`, dependencies first, built-ins left out."""
        builtin = self.builtin_modules()
        files = self.module_files()
        order: list[tuple[str, Path]] = []
        seen: set[str] = set()

        def visit(name: str, chain: tuple[str, ...]) -> None:
            name = name.replace("-", "_")
            if name in seen or name in builtin:
                return
            if name in chain:
                raise VmError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
            if name not in files:
                raise VmError(f"module {name} is neither built into {self.version} nor shipped as a .ko")
            for dep in module_depends(read_module(files[name])):
                visit(dep, chain + (name,))
            seen.add(name)
            order.append((name, files[name]))

        for n in names:
            visit(n, ())
        return order


def _module_name(path: str) -> str:
    base = os.path.basename(path)
    base = re.sub(r"\.ko(\.(xz|zst|gz))?$", "", base)
    return base.replace("-", "_")


def read_module(path: Path) -> bytes:
    """A module's bytes, decompressed: busybox insmod/modprobe take only plain .ko."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        if not shutil.which("zstd"):
            raise VmError(f"{path} is zstd-compressed and zstd is not installed")
        return subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
    return data


def module_depends(ko: bytes) -> list[str]:
    """The `depends=` field of a module's .modinfo section (what `modinfo -F depends` prints)."""
    m = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", ko)
    if not m or not m.group(1):
        return []
    return [d for d in m.group(1).decode().split(",") if d]


def _apt_candidate_depends(package: str) -> str | None:
    """The real kernel package the meta package's candidate version depends on, from the
    local apt lists (no download)."""
    try:
        out = subprocess.run(["apt-cache", "show", "--no-all-versions", package],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    for line in out.stdout.splitlines():
        if line.startswith("Depends:"):
            for dep in line[len("Depends:"):].split(","):
                name = dep.strip().split()[0]
                if name.startswith("linux-image-"):
                    return name
    return None


def _apt_download(package: str, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    # _apt cannot write into a root-only cache dir; download as root instead of warning.
    cmd = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package]
    out = subprocess.run(cmd, cwd=where, capture_output=True, text=True, timeout=600)
    debs = sorted(where.glob(f"{package}_*.deb"))
    if out.returncode != 0 or not debs:
        raise KernelUnavailable(f"`{' '.join(cmd)}` failed (exit {out.returncode}): "
                                f"{(out.stderr or out.stdout).strip()[-800:]} "
                                f"(are the apt lists current? apt-get update)")
    return debs[-1]


def ensure_kernel(cache_dir: str | os.PathLike | None = None) -> Kernel:
    """Download (once) and unpack the Debian cloud kernel; return it.

    linux-image-cloud-amd64 is a meta package; its Depends names the versioned package
    (linux-image-<ver>-cloud-amd64) that holds vmlinuz and the modules."""
    cache = Path(cache_dir or os.environ.get("BLOCKD_KERNEL_CACHE") or DEFAULT_CACHE)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if not os.access(cache, os.W_OK):
            raise PermissionError(cache)
    except PermissionError:
        if cache_dir or os.environ.get("BLOCKD_KERNEL_CACHE"):
            raise
        # Not root: the same cache in the user's home.
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "blockd-tests" / "kernel"
        cache.mkdir(parents=True, exist_ok=True)
    real = _apt_candidate_depends(KERNEL_META_PACKAGE)
    if real is None:
        # No local apt metadata for it: follow the meta package's own Depends.
        meta = _apt_download(KERNEL_META_PACKAGE, cache / "download")
        deps = subprocess.run(["dpkg-deb", "-f", str(meta), "Depends"],
                              capture_output=True, text=True).stdout
        names = [d.strip().split()[0] for d in deps.split(",") if d.strip()]
        real = next((n for n in names if n.startswith("linux-image-")), None)
        if real is None:
            raise KernelUnavailable(f"{meta.name} depends on no linux-image package: {deps!r}")
    root = cache / real
    # One download and unpack at a time, even if two tests start together.
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _unpack_kernel(cache, real, root)
    vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))
    if not vmlinuz:
        raise KernelUnavailable(f"no boot/vmlinuz-* in {root}")
    version = vmlinuz[-1].name[len("vmlinuz-"):]
    return Kernel(root=root, version=version, vmlinuz=vmlinuz[-1])


def _unpack_kernel(cache: Path, real: str, root: Path) -> None:
    if not (root / ".complete").exists():
        log(f"downloading {real} into {cache}")
        t0 = time.monotonic()
        deb = _apt_download(real, cache / "download")
        if root.exists():
            shutil.rmtree(root)
        tmp = cache / f".{real}.unpack"
        if tmp.exists():
            shutil.rmtree(tmp)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        tmp.rename(root)
        (root / ".complete").write_text(deb.name + "\n")
        deb.unlink()
        log(f"unpacked {deb.name} in {time.monotonic() - t0:.1f}s")
        # Kernels an apt update has superseded are ~100 MB each: keep only the current one.
        for old in cache.glob("linux-image-*"):
            if old != root and old.is_dir():
                log(f"removing superseded {old}")
                shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- initramfs


class Cpio:
    """A cpio "newc" archive (what the kernel unpacks as initramfs), built in memory so
    that owners are root and device nodes need no mknod on the host."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 1
        self._dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        name = name.lstrip("/")
        fields = [self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name) + 1, 0]
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        blob = header + name.encode() + b"\0"
        blob += b"\0" * (-len(blob) % 4)
        self._parts.append(blob + data + b"\0" * (-len(data) % 4))

    def dir(self, path: str) -> None:
        path = path.strip("/")
        if not path or path in self._dirs:
            return
        self.dir(os.path.dirname(path))
        self._dirs.add(path)
        self._entry(path, stat.S_IFDIR | 0o755)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.dir(os.path.dirname(path.strip("/")))
        self._entry(path, stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        self.dir(os.path.dirname(path.strip("/")))
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self.dir(os.path.dirname(path.strip("/")))
        self._entry(path, stat.S_IFCHR | mode, rdev=(major, minor))

    def bytes(self) -> bytes:
        trailer = Cpio()
        trailer._ino = self._ino
        trailer._entry("TRAILER!!!", 0)
        return b"".join(self._parts) + trailer._parts[0]


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def shared_libraries(path: Path) -> list[str]:
    """Absolute paths of the libraries `path` loads, the dynamic loader included."""
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        if "not a dynamic executable" in (out.stdout + out.stderr):
            return []  # static
        raise VmError(f"ldd {path}: {out.stderr.strip()}")
    libs = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            raise VmError(f"{path}: library missing on the host: {line}")
        m = re.match(r"\S+ => (/\S+) \(", line) or re.match(r"(/\S+) \(", line)
        if m:
            libs.append(m.group(1))
    return libs


def _strip(data_path: Path, work: Path) -> bytes:
    """The file's bytes without debug info (a RelWithDebInfo blockd is ~40 MB, stripped
    a few MB: a smaller initramfs boots faster under TCG)."""
    if shutil.which("strip"):
        out = work / ("stripped-" + data_path.name)
        r = subprocess.run(["strip", "--strip-debug", "-o", str(out), str(data_path)],
                           capture_output=True)
        if r.returncode == 0:
            data = out.read_bytes()
            out.unlink()
            return data
    return data_path.read_bytes()


def _which(name: str) -> str:
    if "/" in name:
        return name
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    found = shutil.which(name, path=path)
    if not found:
        raise VmError(f"binary {name} not found on the host")
    return found


GUEST_HELPERS = r"""
result() { echo "RESULT $*" > /dev/ttyS1; echo "RESULT $*"; }
ok() { result ok "$1"; }
fail() { _n=$1; shift; result fail "$_n" "$(echo "$*" | tr '\n\r\t' '   ')"; }
note() { echo "NOTE $*"; }
step() {
    _n=$1; shift
    echo "+ [$_n] $*"
    "$@" > /tmp/.step.out 2>&1
    _rc=$?
    cat /tmp/.step.out
    if [ $_rc -eq 0 ]; then ok "$_n"; else fail "$_n" "exit $_rc: $(tail -n 3 /tmp/.step.out)"; fi
    return $_rc
}
"""

INIT = r"""#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /run
echo "VM init $(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS1
echo "VM init: uptime $(cut -d' ' -f1 /proc/uptime)s, kernel $(uname -r)"
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
hostname blockd-vm
ulimit -c 0
(sleep @WATCHDOG@
 echo "RESULT fail watchdog the script ran longer than @WATCHDOG@s" > /dev/ttyS1
 echo "=== watchdog: processes"; ps
 echo "=== dmesg"; dmesg
 poweroff -f) &
cd /tmp
sh /vmtest/script.sh < /dev/null > /dev/console 2>&1
rc=$?
echo "VM script exit $rc"
echo "=== dmesg"
dmesg
echo "=== end"
echo "RESULT done $rc" > /dev/ttyS1
sync
poweroff -f
"""


def build_initramfs(kernel: Kernel, script_text: str, work: Path, binaries=(), files=None,
                    modules=("nbd",), watchdog: int = 600, strip: bool = True,
                    compress: bool = True) -> Path:
    """Write <work>/initramfs.cpio[.gz] and return its path."""
    files = dict(files or {})
    cpio = Cpio()
    # Merged /usr (as on Debian 12): ldd's /lib/... paths and /usr/lib/... both resolve.
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "proc", "sys", "dev", "tmp",
              "run", "root", "etc", "mnt", "vmtest"):
        cpio.dir(d)
    for link in ("bin", "sbin", "lib", "lib64"):
        cpio.symlink(link, f"usr/{link}")
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3, 0o666)
    cpio.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    cpio.file("etc/group", b"root:x:0:\n")
    cpio.file("etc/hosts", b"127.0.0.1 localhost blockd-vm\n::1 localhost\n")
    cpio.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files\n")
    cpio.file("etc/fstab", b"")
    cpio.symlink("etc/mtab", "/proc/mounts")

    busybox = Path(_which("busybox"))
    if not _is_elf(busybox) or shared_libraries(busybox):
        raise VmError(f"{busybox} is not a static busybox: install busybox-static")
    cpio.file("usr/bin/busybox", busybox.read_bytes(), 0o755)
    applets = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    placed = {"usr/bin/busybox"}

    def guest_path(p: str) -> str:
        p = p.strip("/")
        for short in ("bin", "sbin", "lib", "lib64"):
            if p.startswith(short + "/"):
                return "usr/" + p
        return p

    wanted: dict[str, Path] = {}
    for b in binaries:
        host = Path(_which(b))
        wanted[f"usr/bin/{host.name}"] = host
    for g, h in files.items():
        wanted[guest_path(g)] = Path(h)
    libs: dict[str, Path] = {}
    for g, host in wanted.items():
        if not host.is_file():
            raise VmError(f"{host} (for {g} in the guest) does not exist")
        elf = _is_elf(host)
        data = _strip(host, work) if (elf and strip) else host.read_bytes()
        mode = host.stat().st_mode & 0o777
        cpio.file(g, data, mode | (0o755 if elf else 0))
        placed.add(g)
        if elf:
            for lib in shared_libraries(host):
                # Keep the soname file name (the loader looks it up by that), take the bytes
                # from wherever the symlink chain ends.
                real_dir = os.path.realpath(os.path.dirname(lib))
                libs[guest_path(os.path.join(real_dir, os.path.basename(lib)))] = Path(os.path.realpath(lib))
    for g, host in sorted(libs.items()):
        if g not in placed:
            cpio.file(g, host.read_bytes(), 0o755)
            placed.add(g)
    for applet in applets:
        g = guest_path(applet)
        if g not in placed:
            cpio.symlink(g, "/usr/bin/busybox")
            placed.add(g)

    mod_root = f"lib/modules/{kernel.version}"
    cpio.dir(f"usr/{mod_root}")
    # modules.dep as depmod writes it: every module with all its dependencies, direct
    # and indirect, the one to load first last (modprobe loads the list backwards).
    deps_lines = []
    for name, path in kernel.resolve_modules(modules):
        rel = re.sub(r"\.ko\.(xz|zst|gz)$", ".ko", os.path.relpath(path, kernel.module_dir))
        cpio.file(f"usr/{mod_root}/{rel}", read_module(path))
        needs = kernel.resolve_modules([name])[:-1]  # load order, without the module itself
        dep_rels = [re.sub(r"\.ko\.(xz|zst|gz)$", ".ko", os.path.relpath(p2, kernel.module_dir))
                    for _, p2 in reversed(needs)]
        deps_lines.append(f"{rel}: {' '.join(dep_rels)}".rstrip())
    cpio.file(f"usr/{mod_root}/modules.dep", ("\n".join(deps_lines) + "\n").encode())
    builtin = kernel.module_dir / "modules.builtin"
    if builtin.exists():
        cpio.file(f"usr/{mod_root}/modules.builtin", builtin.read_bytes())

    cpio.file("init", INIT.replace("@WATCHDOG@", str(int(watchdog))).encode(), 0o755)
    cpio.file("vmtest/script.sh", (GUEST_HELPERS + "\n" + script_text).encode(), 0o755)

    data = cpio.bytes()
    if compress:
        out = work / "initramfs.cpio.gz"
        out.write_bytes(gzip.compress(data, compresslevel=1))
    else:
        out = work / "initramfs.cpio"
        out.write_bytes(data)
    return out


# --------------------------------------------------------------------------- qemu


@dataclasses.dataclass
class Result:
    status: str   # "ok" or "fail"
    name: str
    detail: str = ""

    def __str__(self) -> str:
        return f"RESULT {self.status} {self.name}" + (f" {self.detail}" if self.detail else "")


@dataclasses.dataclass
class VmResult:
    results: list[Result]
    console_text: str
    boot_seconds: float | None   # qemu start -> guest /init running (host clock)
    guest_uptime_at_init: float | None   # the guest kernel's own uptime at /init
    total_seconds: float         # qemu start -> qemu exit
    done: bool                   # saw "RESULT done"
    exit_code: int | None        # the script's exit status in the guest
    timed_out: bool              # the host timeout killed qemu
    qemu_returncode: int | None
    workdir: str | None          # kept only with keep=True / BLOCKD_VM_KEEP=1

    def result(self, name: str) -> Result | None:
        return next((r for r in self.results if r.name == name), None)

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status != "ok"]

    @property
    def ok(self) -> bool:
        return self.done and self.exit_code == 0 and not self.failures and not self.timed_out


def parse_results(text: str) -> tuple[list[Result], bool, int | None, float | None]:
    results, done, code, uptime = [], False, None, None
    for raw in text.splitlines():
        line = raw.strip("\r\n\x00 ")
        if line.startswith("VM init "):
            try:
                uptime = float(line.split()[2])
            except (IndexError, ValueError):
                pass
            continue
        if not line.startswith("RESULT "):
            continue
        parts = line.split(" ", 3)
        if len(parts) >= 2 and parts[1] == "done":
            done = True
            try:
                code = int(parts[2]) if len(parts) > 2 else None
            except ValueError:
                code = None
        elif len(parts) >= 3 and parts[1] in ("ok", "fail"):
            results.append(Result(parts[1], parts[2], parts[3] if len(parts) > 3 else ""))
    return results, done, code, uptime


def ensure_host_tools() -> str:
    """The qemu binary; installs qemu-system-x86/busybox-static if missing and we are root.
    Raises QemuUnavailable when qemu still cannot run."""
    missing = [pkg for tool, pkg in HOST_PACKAGES.items() if not shutil.which(tool, path=_path())]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"installing {' '.join(missing)}")
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=900)
    qemu = shutil.which(QEMU, path=_path())
    if not qemu:
        raise QemuUnavailable(f"{QEMU} is not installed and could not be installed "
                              f"(apt-get install {HOST_PACKAGES.get(QEMU, QEMU)})")
    try:
        r = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise QemuUnavailable(f"{qemu} does not run: {e}")
    if r.returncode != 0:
        raise QemuUnavailable(f"{qemu} --version failed: {r.stderr.strip()}")
    return qemu


def qemu_starts(qemu: str) -> bool:
    """Whether a minimal TCG machine (paused, no guest) stays up for two seconds."""
    probe = subprocess.Popen([qemu, "-accel", "tcg", "-nodefaults", "-display", "none",
                              "-monitor", "none", "-nic", "none", "-S"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    try:
        probe.wait(timeout=2)
        return False
    except subprocess.TimeoutExpired:
        return True
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()


def _path() -> str:
    return os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin"


def qemu_command(qemu: str, kernel: Kernel, initrd: Path, work: Path, memory_mib: int,
                 smp: int, append: str) -> list[str]:
    return [
        qemu, "-accel", "tcg", "-cpu", "max", "-m", str(memory_mib), "-smp", str(smp),
        "-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none",
        "-nic", "none",  # the guest must not reach any network: it uses its own loopback
        "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd),
        "-append", f"console=ttyS0 panic=-1 quiet {append}".strip(),
        "-serial", f"file:{work / 'console.log'}",   # ttyS0: console
        "-serial", f"file:{work / 'results.log'}",   # ttyS1: RESULT lines only
    ]


def run_in_vm(script_text: str, binaries=(), files=None, modules=("nbd",), timeout: int = 600,
              memory_mib: int = 1024, smp: int = 2, append: str = "", verbose: bool | None = None,
              keep: bool | None = None, kernel: Kernel | None = None) -> VmResult:
    """Boot the kernel with an initramfs holding `binaries`, `files`, `modules` and the
    script; return what the guest reported. qemu is killed (by PID) after `timeout`
    seconds; the guest's own watchdog fires 20 s before that, so it can still print dmesg."""
    if verbose is None:
        verbose = os.environ.get("BLOCKD_VM_VERBOSE") == "1"
    if keep is None:
        keep = os.environ.get("BLOCKD_VM_KEEP") == "1"
    qemu = ensure_host_tools()
    kernel = kernel or ensure_kernel()
    work = Path(tempfile.mkdtemp(prefix="blockd-vm-"))
    proc = None
    # ctest ends a test that overruns its TIMEOUT with SIGTERM: turn it into an exception
    # so the finally below kills qemu (PR_SET_PDEATHSIG covers SIGKILL of this process).
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        t0 = time.monotonic()
        initrd = build_initramfs(kernel, script_text, work, binaries=binaries, files=files,
                                 modules=modules, watchdog=max(10, timeout - 20))
        log(f"initramfs {initrd.stat().st_size / 1e6:.1f} MB built in {time.monotonic() - t0:.1f}s; "
            f"kernel {kernel.version}")
        cmd = qemu_command(qemu, kernel, initrd, work, memory_mib, smp, append)
        (work / "qemu.cmd").write_text(" ".join(cmd) + "\n")
        console_path, results_path = work / "console.log", work / "results.log"
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        log(f"qemu pid {proc.pid} started, timeout {timeout}s")
        boot_seconds = None
        timed_out = False
        shown = 0
        while True:
            rc = proc.poll()
            if boot_seconds is None and results_path.exists() and b"VM init" in results_path.read_bytes():
                boot_seconds = time.monotonic() - start
            if verbose and console_path.exists():
                data = console_path.read_bytes()
                if len(data) > shown:
                    sys.stderr.write(data[shown:].decode(errors="replace"))
                    sys.stderr.flush()
                    shown = len(data)
            if rc is not None:
                break
            if time.monotonic() - start > timeout:
                timed_out = True
                log(f"timeout after {timeout}s: killing qemu pid {proc.pid}")
                proc.kill()
                proc.wait()
                break
            time.sleep(0.1)
        total = time.monotonic() - start
        qemu_out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        console = console_path.read_bytes().decode(errors="replace") if console_path.exists() else ""
        res_text = results_path.read_bytes().decode(errors="replace") if results_path.exists() else ""
        guest_printed = bool(console.strip())
        if qemu_out.strip():
            console = f"[qemu output]\n{qemu_out}\n[guest console]\n{console}"
        results, done, code, uptime = parse_results(res_text)
        if boot_seconds is None and uptime is not None:
            boot_seconds = total  # init ran but we missed the moment; bound it by the total
        if proc.returncode not in (0, None) and not timed_out and not guest_printed:
            # qemu died before the guest printed anything. Skip only if a bare qemu
            # cannot start either; otherwise our command line is at fault: a failure.
            why = f"qemu exited {proc.returncode} before the guest started: {qemu_out.strip()[-800:]}"
            if qemu_starts(qemu):
                raise VmError(why + f" (a bare qemu starts, so this command line is wrong: {' '.join(cmd)})")
            raise QemuUnavailable(why)
        return VmResult(results=results, console_text=console, boot_seconds=boot_seconds,
                        guest_uptime_at_init=uptime, total_seconds=total, done=done,
                        exit_code=code, timed_out=timed_out, qemu_returncode=proc.returncode,
                        workdir=str(work) if keep else None)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if proc is not None and proc.poll() is None:
            log(f"killing qemu pid {proc.pid}")
            proc.kill()
            proc.wait()
        if keep:
            log(f"kept work dir {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _terminated(signum, frame):
    raise SystemExit(f"vm: terminated by signal {signum}")


def _die_with_parent() -> None:
    """In the qemu child: get SIGKILL when the test process dies, however it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def skip_if_no_qemu() -> None:
    """Exit 77 (skipped) if qemu cannot run at all; the only skip the kernel tests allow."""
    try:
        ensure_host_tools()
    except QemuUnavailable as e:
        print(f"SKIP: {e}", file=sys.stderr)
        sys.exit(SKIP)


def report(r: VmResult, expected=()) -> int:
    """Print the evidence (timings and every RESULT line) and return the test's exit code:
    0 when every expected step and the script's end were reported ok, else 1."""
    print(f"boot: {r.boot_seconds:.1f}s to /init (guest uptime {r.guest_uptime_at_init}s); "
          f"total {r.total_seconds:.1f}s" if r.boot_seconds is not None else
          f"boot: /init never ran; total {r.total_seconds:.1f}s")
    for res in r.results:
        print(res)
    missing = [n for n in expected if r.result(n) is None]
    problems = [str(f) for f in r.failures]
    if missing:
        problems.append(f"steps never reported: {', '.join(missing)}")
    if r.timed_out:
        problems.append("qemu was killed at the host timeout")
    if not r.done:
        problems.append("the guest script never finished (no RESULT done)")
    elif r.exit_code != 0:
        problems.append(f"the guest script exited {r.exit_code}")
    if problems:
        print("---- guest console ----")
        print(r.console_text[-30000:])
        print("---- end of guest console ----")
        for p in problems:
            print(f"FAIL: {p}")
        return 1
    print(f"PASS: {len(r.results)} results ok")
    return 0


def main(argv=None) -> int:
    """python3 vm.py [--binary B]... [--file GUEST=HOST]... [--module M]... [--timeout S]
    [SCRIPT]: boot once and run SCRIPT (a file, or "-" for stdin; default: a smoke test
    that loads nbd.ko), printing the boot time and every RESULT line."""
    import argparse
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("script", nargs="?")
    ap.add_argument("--binary", action="append", default=[], help="host binary, lands in /usr/bin")
    ap.add_argument("--file", action="append", default=[], metavar="GUEST=HOST")
    ap.add_argument("--module", action="append", default=None, help="kernel module (default nbd)")
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--memory", type=int, default=1024, help="MiB")
    args = ap.parse_args(argv)
    if args.script == "-":
        text = sys.stdin.read()
    elif args.script:
        text = Path(args.script).read_text()
    else:
        text = "step uname uname -a\nstep modprobe-nbd modprobe nbd\nstep nbd0 test -b /dev/nbd0\n"
    files = dict(f.split("=", 1) for f in args.file)
    try:
        result = run_in_vm(text, binaries=args.binary, files=files,
                           modules=args.module or ["nbd"], timeout=args.timeout,
                           memory_mib=args.memory)
    except QemuUnavailable as e:
        print(f"SKIP: {e}", file=sys.stderr)
        return SKIP
    except VmError as e:
        print(f"FAIL: {e}")
        return 1
    return report(result)


if __name__ == "__main__":
    sys.exit(main())
