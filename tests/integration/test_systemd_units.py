#!/usr/bin/env python3
"""What `cmake --install` ships for systemd, judged by systemd's own tools.

  layout     `DESTDIR=ROOT cmake --install BUILD --prefix /usr`: the binaries, the four units,
             the tmpfiles.d and modules-load.d snippets, the sample config in /etc/blockd (not
             /usr/etc), the man pages, bash completion and the attach example are where a
             Debian package puts them, the units byte-identical to systemd/, nothing outside
             usr/ and etc/; systemd-tmpfiles --root makes /run/blockd 0750 and
             /var/lib/blockd 0700 from the installed snippet
  verify     systemd-analyze verify on the installed units, and on an instance
             (blockctl-attach@db.service), must print nothing: in a private mount namespace
             where ROOT/usr/sbin and ROOT/usr/bin are overlaid on the host's, so
             /usr/sbin/blockd and /usr/bin/blockctl resolve to the installed binaries, with
             MANPATH at the installed man pages (Documentation= is checked too). Where the
             namespace cannot be made (not root, no overlayfs) only the next check runs
  prefix     `cmake --install BUILD --prefix TMP/p` (no DESTDIR): the units are the same but
             for ExecStart=/ExecStop= naming TMP/p/sbin/blockd --config
             TMP/p/etc/blockd/blockd.toml and TMP/p/bin/blockctl; systemd-analyze verify on
             them by path, where those paths resolve for real
  security   systemd-analyze security --offline=true: blockd.service's exposure <= 2.0 ("OK")
  config     an operator's edited blockd.toml survives a re-install; the sample goes beside
             it as blockd.toml.dist
  nocaps     blockd as root with the unit's capability set (none: setpriv --bounding-set=-all)
             and no_new_privs: starts, creates a catalog volume, takes an image import
             (verified read-back) into it and into a loop device given with --volume (whose
             zero runs go out as WRITE_ZEROES, BLKZEROOUT on the device), and exits 0 on SIGTERM
  seccomp    the same, also under the unit's SystemCallFilter= (its groups expanded by
             systemd-analyze syscall-filter, loaded with python3-seccomp, failing calls with
             SystemCallErrorNumber=): blockd's io_uring rings and its whole start, API and I/O
             path use only allowed system calls
  man        mandoc -T lint -W warning (else groff -ww) and man --warnings find nothing; every
             long option of `blockd --help` is in blockd.8, every command and option of
             `blockctl --help` (walked recursively) in blockctl.8, every key of
             server/examples/blockd.toml in blockd.toml.5

Skips (77) only when systemd-analyze is missing.

Environment: BLOCKD_BUILD_DIR (the build tree to install from; default build/),
BLOCKD_BIN and BLOCKCTL_BIN (for --help).
"""
import filecmp
import os
import re
import shutil
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockd_fixture as fx  # noqa: E402

if __name__ == "__main__" and "--exec-filtered" not in sys.argv:
    fx.use_system_python()  # Debian's python3, the one with python3-seccomp

REPO = fx.REPO
SYSTEMD_SRC = os.path.join(REPO, "systemd")
MAN_SRC = os.path.join(REPO, "man")
SAMPLE_CONFIG = os.path.join(REPO, "server", "examples", "blockd.toml")
UNITS = ["blockd.service", "blockd.socket", "blockd-control.socket", "blockctl-attach@.service"]
MAX_EXPOSURE = 2.0


def build_dir():
    return os.environ.get("BLOCKD_BUILD_DIR", os.path.join(REPO, "build"))


def blockctl_bin():
    return os.environ.get("BLOCKCTL_BIN", os.path.join(build_dir(), "tools", "blockctl"))


def install(prefix, destdir=None):
    cmd = [shutil.which("cmake", path=fx.SYSTEM_PATH) or "cmake", "--install", build_dir(), "--prefix", prefix]
    if destdir is not None:
        cmd = ["env", f"DESTDIR={destdir}"] + cmd
    else:
        cmd = ["env", "-u", "DESTDIR"] + cmd
    return fx.run(cmd, timeout=240)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def quiet(c, result, what):
    """A systemd-analyze run that must succeed and say nothing."""
    said = (result.stdout + result.stderr).strip()
    c.ok(result.returncode == 0 and said == "", what,
         f"exit {result.returncode}, output:\n{said}" if said or result.returncode else None)


def check_layout(c, root):
    expected = {
        "usr/sbin/blockd": 0o755, "usr/bin/blockctl": 0o755,
        "usr/lib/systemd/system/blockd.service": 0o644,
        "usr/lib/systemd/system/blockd.socket": 0o644,
        "usr/lib/systemd/system/blockd-control.socket": 0o644,
        "usr/lib/systemd/system/blockctl-attach@.service": 0o644,
        "usr/lib/tmpfiles.d/blockd.conf": 0o644,
        "usr/lib/modules-load.d/nbd.conf": 0o644,
        "etc/blockd/blockd.toml": 0o644,
        "usr/share/man/man8/blockd.8": 0o644,
        "usr/share/man/man8/blockctl.8": 0o644,
        "usr/share/man/man5/blockd.toml.5": 0o644,
        "usr/share/bash-completion/completions/blockctl": 0o644,
        "usr/share/doc/blockd/attach.conf.example": 0o644,
    }
    for rel, mode in expected.items():
        path = os.path.join(root, rel)
        if c.ok(os.path.isfile(path), f"installed {rel}"):
            c.eq(stat.S_IMODE(os.stat(path).st_mode), mode, f"{rel} has mode {mode:o}")
    installed = []
    for top, _dirs, files in os.walk(root):
        installed += [os.path.relpath(os.path.join(top, f), root) for f in files]
    print("installed:\n  " + "\n  ".join(sorted(installed)))
    stray = [f for f in installed if not (f.startswith("usr/") or f.startswith("etc/blockd/"))]
    c.ok(not stray, "nothing installed outside usr/ and etc/blockd/", f"{stray}")
    c.ok(not any(f.startswith(("usr/etc/", "usr/local/")) for f in installed),
         "with --prefix /usr the config is in /etc, not /usr/etc, and nothing is in /usr/local")

    same = [("usr/lib/systemd/system/" + u, os.path.join(SYSTEMD_SRC, u)) for u in UNITS]
    same += [("usr/lib/tmpfiles.d/blockd.conf", os.path.join(SYSTEMD_SRC, "blockd.conf")),
             ("usr/lib/modules-load.d/nbd.conf", os.path.join(SYSTEMD_SRC, "nbd.conf")),
             ("etc/blockd/blockd.toml", SAMPLE_CONFIG),
             ("usr/share/man/man8/blockd.8", os.path.join(MAN_SRC, "blockd.8")),
             ("usr/share/man/man8/blockctl.8", os.path.join(MAN_SRC, "blockctl.8")),
             ("usr/share/man/man5/blockd.toml.5", os.path.join(MAN_SRC, "blockd.toml.5"))]
    for rel, src in same:
        path = os.path.join(root, rel)
        if os.path.isfile(path):
            c.ok(filecmp.cmp(path, src, shallow=False), f"{rel} is {os.path.relpath(src, REPO)} byte for byte")

    # The contract with blockd itself (server/service_manager.h): what the units promise it.
    def settings(rel):
        out = {}
        for line in read(os.path.join(root, rel)).splitlines():
            if "=" in line and not line.startswith(("#", ";", "[")):
                key, value = line.split("=", 1)
                out.setdefault(key.strip(), []).append(value.strip())
        return out
    unit_dir = "usr/lib/systemd/system/"
    service = settings(unit_dir + "blockd.service")
    for key, value in (("Type", "notify"), ("ExecStart", "/usr/sbin/blockd"),
                       ("ExecReload", "/bin/kill -HUP $MAINPID"), ("Restart", "on-failure"),
                       ("RestartPreventExitStatus", "2 3"), ("RuntimeDirectory", "blockd"),
                       ("RuntimeDirectoryPreserve", "yes"), ("StateDirectory", "blockd"),
                       ("CapabilityBoundingSet", ""), ("NoNewPrivileges", "yes"),
                       ("ProtectSystem", "strict"), ("DevicePolicy", "closed")):
        c.eq(service.get(key), [value], f"blockd.service: {key}={value}")
    c.ok(service.get("WatchdogSec") and service["WatchdogSec"][0] not in ("0", "infinity"),
         "blockd.service sets a watchdog", f"{service.get('WatchdogSec')}")
    for unit, name, listen in (("blockd.socket", "nbd", "10809"),
                               ("blockd-control.socket", "control", "/run/blockd/control.sock")):
        sock = settings(unit_dir + unit)
        c.eq(sock.get("FileDescriptorName"), [name], f"{unit} passes its sockets as {name!r}")
        c.eq(sock.get("Service"), ["blockd.service"], f"{unit} activates blockd.service")
        c.ok(listen in sock.get("ListenStream", []), f"{unit} listens on {listen}", f"{sock.get('ListenStream')}")
    c.eq(settings(unit_dir + "blockd-control.socket").get("SocketMode"), ["0660"], "the control socket is 0660")
    attach = settings(unit_dir + "blockctl-attach@.service")
    c.eq(attach.get("EnvironmentFile"), ["/etc/blockd/attach/%i.conf"], "blockctl-attach@: EnvironmentFile")
    c.eq(attach.get("Requires"), ["modprobe@nbd.service"], "blockctl-attach@ requires modprobe@nbd.service")
    c.ok(any(v.startswith("/usr/bin/blockctl detach ") for v in attach.get("ExecStop", [])),
         "blockctl-attach@ detaches on stop")

    modules = [line.strip() for line in read(os.path.join(root, "usr/lib/modules-load.d/nbd.conf")).splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    c.eq(modules, ["nbd"], "modules-load.d/nbd.conf loads nbd and nothing else")
    version = fx.run([os.path.join(root, "usr/sbin/blockd"), "--version"], check=False)
    c.ok(version.returncode == 0 and "blockd" in version.stdout, "the installed blockd runs (--version)",
         version.stdout + version.stderr)

    # The tmpfiles snippet, applied to the DESTDIR tree only (--root), as systemd would at boot.
    tmpfiles = shutil.which("systemd-tmpfiles", path=fx.SYSTEM_PATH)
    if tmpfiles and os.geteuid() == 0:
        r = fx.run([tmpfiles, f"--root={root}", "--create", os.path.join(root, "usr/lib/tmpfiles.d/blockd.conf")],
                   check=False)
        quiet(c, r, "systemd-tmpfiles --create accepts the installed blockd.conf")
        for rel, mode in (("run/blockd", 0o750), ("var/lib/blockd", 0o700)):
            path = os.path.join(root, rel)
            if c.ok(os.path.isdir(path), f"tmpfiles made /{rel}"):
                c.eq(stat.S_IMODE(os.stat(path).st_mode), mode, f"/{rel} has mode {mode:o}")
                shutil.rmtree(path)
    else:
        print("note: tmpfiles snippet not applied (systemd-tmpfiles missing or not root)")


def verify_in_namespace(c, root, analyze):
    """systemd-analyze verify on the /usr-prefix units, with the installed binaries
    overlaid on the host's /usr/sbin and /usr/bin in a private mount namespace."""
    unshare = shutil.which("unshare", path=fx.SYSTEM_PATH)
    if os.geteuid() != 0 or unshare is None:
        print("note: not root or no unshare: the /usr units are verified through the prefix install only")
        return False
    unit_dir = os.path.join(root, "usr/lib/systemd/system")
    units = [os.path.join(unit_dir, u) for u in UNITS] + [os.path.join(unit_dir, "blockctl-attach@db.service")]
    script = (
        'set -e\n'
        'for d in sbin bin; do\n'
        '  mount -t overlay overlay -o "lowerdir=$ROOT/usr/$d:/usr/$d" "/usr/$d" 2>/dev/null || exit 99\n'
        'done\n'
        'test -x /usr/sbin/blockd && test -x /usr/bin/blockctl || exit 99\n'
        'exec "$ANALYZE" verify "$@"\n')
    env = dict(os.environ, ROOT=root, ANALYZE=analyze, MANPATH=os.path.join(root, "usr/share/man"),
               PATH=fx.SYSTEM_PATH)
    print("$ unshare --mount (overlay ROOT/usr/{sbin,bin}) systemd-analyze verify " + " ".join(units))
    r = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c", script, "verify"] + units,
                       capture_output=True, text=True, timeout=120, env=env, cwd=root)
    if r.returncode == 99:
        print("note: could not overlay /usr/sbin and /usr/bin (no overlayfs?): the /usr units are verified "
              "through the prefix install only")
        return False
    quiet(c, r, "systemd-analyze verify: the installed /usr units (and blockctl-attach@db.service) are clean, "
                "/usr/sbin/blockd and /usr/bin/blockctl resolve")
    return True


def check_prefix_install(c, tmp, analyze):
    prefix = os.path.join(tmp, "p")
    install(prefix)
    unit_dir = os.path.join(prefix, "lib/systemd/system")
    config = os.path.join(prefix, "etc/blockd/blockd.toml")
    c.ok(os.path.isfile(config), "--prefix P puts the sample config in P/etc/blockd (GNUInstallDirs)")
    for unit in UNITS:
        path = os.path.join(unit_dir, unit)
        if not c.ok(os.path.isfile(path), f"--prefix P installs P/lib/systemd/system/{unit}"):
            continue
        text = read(path)
        source = read(os.path.join(SYSTEMD_SRC, unit))
        if "ExecStart=/usr/sbin/blockd" in source:
            c.ok(f"ExecStart={prefix}/sbin/blockd --config {config}\n" in text,
                 f"{unit}: ExecStart= runs P/sbin/blockd --config P/etc/blockd/blockd.toml")
        if "/usr/bin/blockctl " in source:
            c.ok(f"ExecStart={prefix}/bin/blockctl " in text and f"ExecStop={prefix}/bin/blockctl " in text,
                 f"{unit}: ExecStart=/ExecStop= run P/bin/blockctl")
        back = text.replace(f" --config {config}", "").replace(f"{prefix}/sbin/", "/usr/sbin/") \
                   .replace(f"{prefix}/bin/", "/usr/bin/")
        c.ok(back == source, f"{unit}: differs from systemd/{unit} only in those paths")
    units = [os.path.join(unit_dir, u) for u in UNITS] + [os.path.join(unit_dir, "blockctl-attach@db.service")]
    r = fx.run(["env", f"MANPATH={os.path.join(prefix, 'share/man')}", analyze, "verify"] + units,
               check=False, cwd=tmp)
    quiet(c, r, "systemd-analyze verify: the --prefix P units are clean (their paths resolve)")


def check_security(c, root, analyze):
    for unit, limit in (("blockd.service", MAX_EXPOSURE), ("blockctl-attach@.service", None)):
        path = os.path.join(root, "usr/lib/systemd/system", unit)
        r = fx.run([analyze, "security", "--offline=true", "--no-pager", path], check=False)
        m = re.search(r"Overall exposure level for (\S+): (\d+(?:\.\d+)?) (\S+)", r.stdout + r.stderr)
        if not c.ok(m is not None, f"systemd-analyze security --offline=true rates {unit}",
                    r.stdout[-2000:] + r.stderr[-2000:]):
            continue
        exposure = float(m.group(2))
        print(f"exposure of {unit}: {exposure} {m.group(3)}")
        if limit is not None:
            c.ok(exposure <= limit, f"{unit} exposure {exposure} <= {limit}", r.stdout[-6000:])
            bad = [line for line in r.stdout.splitlines() if line.startswith("✗")]
            print("what still counts:\n" + "\n".join(bad))


def check_config_kept(c, root):
    config = os.path.join(root, "etc/blockd/blockd.toml")
    mine = "# the operator's own\nlog_level = \"debug\"\n"
    with open(config, "w", encoding="utf-8") as f:
        f.write(mine)
    install("/usr", root)
    c.eq(read(config), mine, "a re-install keeps the operator's edited /etc/blockd/blockd.toml")
    dist = config + ".dist"
    c.ok(os.path.isfile(dist) and filecmp.cmp(dist, SAMPLE_CONFIG, shallow=False),
         "and puts the sample beside it as blockd.toml.dist")


def unit_syscall_filter(unit_path, analyze):
    """The allowed system call names and the errno name of a unit's SystemCallFilter=,
    groups expanded by systemd-analyze (an allow list, then ~ lines taken away)."""
    def expand(name, seen):
        if not name.startswith("@"):
            return {name}
        if name in seen:
            return set()
        seen.add(name)
        out = set()
        r = fx.run([analyze, "syscall-filter", "--no-pager", name], check=False)
        for line in r.stdout.splitlines()[1:]:
            word = line.strip()
            if word and not word.startswith("#"):
                out |= expand(word, seen)
        return out

    allowed, errno_name = None, None
    for line in read(unit_path).splitlines():
        if line.startswith("SystemCallFilter="):
            value = line.split("=", 1)[1].strip()
            deny = value.startswith("~")
            names = set()
            for word in value.lstrip("~").split():
                names |= expand(word, set())
            if deny:
                allowed = (allowed or set()) - names
            else:
                allowed = (allowed or set()) | names
        elif line.startswith("SystemCallErrorNumber="):
            errno_name = line.split("=", 1)[1].strip()
    return allowed, errno_name


def exec_filtered(allow_file, errno_name, argv):
    """(Helper mode of this script) load an allow-list seccomp filter, then exec argv."""
    import errno
    import seccomp
    action = seccomp.ERRNO(getattr(errno, errno_name)) if errno_name else seccomp.KILL
    f = seccomp.SyscallFilter(defaction=action)
    for name in read(allow_file).split():
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            pass  # a name this architecture does not have
    f.load()
    os.execv(argv[0], argv)


def check_no_capabilities(c, tmp, seccomp_allow=None, errno_name=None):
    """What CapabilityBoundingSet= (empty) leaves blockd: enough, as root, for its state dir,
    its control socket, volume files and a block device's node."""
    setpriv = shutil.which("setpriv", path=fx.SYSTEM_PATH)
    losetup = shutil.which("losetup", path=fx.SYSTEM_PATH)
    if os.geteuid() != 0 or setpriv is None:
        print("note: not root or no setpriv: blockd without capabilities not tried")
        return
    work = os.path.join(tmp, "nocaps-seccomp" if seccomp_allow else "nocaps")
    how = "without capabilities" + (", under the unit's SystemCallFilter=" if seccomp_allow else "")
    os.makedirs(work)
    loop = None
    volumes = []
    if losetup and os.path.exists("/dev/loop-control"):
        backing = os.path.join(work, "device.img")
        with open(backing, "wb") as f:
            f.truncate(8 << 20)
        r = fx.run([losetup, "--find", "--show", backing], check=False)
        if r.returncode == 0 and r.stdout.strip().startswith("/dev/loop"):
            loop = r.stdout.strip()
            fx.on_timeout(lambda: subprocess.run([losetup, "-d", loop], timeout=10))
            volumes.append(f"name=dev,path={loop}")
        else:
            print("note: no loop device: the block-device volume is not tried", r.stderr)
    image = os.path.join(work, "image.raw")
    with open(image, "wb") as f:        # data, a zero run (sent as WRITE_ZEROES), data
        f.write(os.urandom(1 << 20) + bytes(2 << 20) + os.urandom(1 << 20))
    b = fx.Blockd(volumes=volumes, state_dir=os.path.join(work, "state"))
    os.makedirs(b.state_dir)
    wrap = [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs"]
    if seccomp_allow:
        allow_file = os.path.join(work, "allowed-syscalls")
        with open(allow_file, "w", encoding="utf-8") as f:
            f.write("\n".join(sorted(seccomp_allow)) + "\n")
        wrap += [fx.SYSTEM_PYTHON, os.path.abspath(__file__), "--exec-filtered", allow_file, errno_name or "", "--"]
    b.args = wrap + b.args
    try:
        b.start()
        status = read(f"/proc/{b.proc.pid}/status")
        caps = dict(re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", status, re.M))
        c.ok(all(int(caps.get(k, "1"), 16) == 0 for k in ("CapBnd", "CapEff", "CapPrm")),
             "blockd runs with no capability (CapBnd, CapEff, CapPrm all 0)", f"{caps}")
        c.ok("NoNewPrivs:\t1" in status, "and with no_new_privs")
        ctl = [blockctl_bin(), "--server", f"unix://{b.control_socket}"]
        r = fx.run(ctl + ["volume", "create", "db", "--size", "8MiB"], check=False)
        c.ok(r.returncode == 0, f"{how}: volume create (catalog, volume file)", r.stderr)
        r = fx.run(ctl + ["volume", "import", "db", image], check=False)
        c.ok(r.returncode == 0, f"{how}: volume import into a file volume, verified", r.stderr)
        if loop:
            # A --volume is not in the catalog: straight to blockd's NBD address.
            r = fx.run(ctl + ["volume", "import", "dev", image, "--nbd", b.uri("dev")], check=False)
            print(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "")
            c.ok(r.returncode == 0, f"{how}: volume import into {loop} (WRITE_ZEROES), verified",
                 r.stderr)
        if seccomp_allow:
            c.ok("io_uring" not in b.log, "the io_uring probe passed under the filter", b.log[-2000:])
        c.eq(b.stop(), 0, f"blockd {how} exits 0 on SIGTERM")
        c.ok("Operation not permitted" not in b.log and "EPERM" not in b.log,
             f"blockd {how} logged no EPERM", b.log[-3000:])
    finally:
        b.kill()
        if loop:
            subprocess.run([losetup, "-d", loop], timeout=30)


def roff_text(path):
    """The page's words as a reader sees them: \\- is -, font escapes and quotes gone."""
    text = read(path)
    text = re.sub(r"\\f[BIRP]|\\f\(..|\\&|\\e", "", text)
    return text.replace("\\-", "-").replace('"', "")


def help_options(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))


def blockctl_commands(binary, path=()):
    """(command path, its --help) for blockctl and every subcommand, recursively."""
    r = fx.run([binary, *path, "--help"], check=False)
    out = [(path, r.stdout)]
    if "Subcommands:" in r.stdout:
        section = r.stdout.split("Subcommands:", 1)[1]
        for line in section.splitlines():
            m = re.match(r"^  ([a-z][a-z-]*)(?:, [a-z-]+)*\s{2,}", line)
            if m:
                out += blockctl_commands(binary, path + (m.group(1),))
    return out


def check_man(c):
    pages = [os.path.join(MAN_SRC, p) for p in ("blockd.8", "blockctl.8", "blockd.toml.5")]
    mandoc = shutil.which("mandoc", path=fx.SYSTEM_PATH)
    groff = shutil.which("groff", path=fx.SYSTEM_PATH)
    man = shutil.which("man", path=fx.SYSTEM_PATH)
    for page in pages:
        name = os.path.basename(page)
        if mandoc:
            r = fx.run([mandoc, "-T", "lint", "-W", "warning", page], check=False)
            quiet(c, r, f"mandoc -T lint -W warning {name}: no warning")
        elif groff:
            r = fx.run([groff, "-man", "-ww", "-z", page], check=False)
            quiet(c, r, f"groff -man -ww -z {name}: no warning")
        if man:
            r = fx.run(["env", "MANWIDTH=80", "LC_ALL=C.UTF-8", man, "--warnings", "-l", page], check=False)
            c.ok(r.returncode == 0 and r.stderr.strip() == "" and "NAME" in r.stdout,
                 f"man --warnings -l {name} renders without a warning", r.stderr)
    if not (mandoc or groff):
        print("note: neither mandoc nor groff: the pages are not linted")

    blockd_page = roff_text(pages[0])
    r = fx.run([fx.blockd_bin(), "--help"], check=False)
    if c.ok(r.returncode == 0, "blockd --help"):
        missing = sorted(o for o in help_options(r.stdout) if o not in blockd_page)
        c.ok(not missing, "blockd.8 documents every option of blockd --help", f"missing {missing}")

    blockctl_page = roff_text(pages[1])
    commands = blockctl_commands(blockctl_bin())
    c.ok(len(commands) > 10, f"blockctl --help lists commands ({len(commands)} found)")
    for path, text in commands:
        where = "blockctl " + " ".join(path) if path else "blockctl"
        if path and "Subcommands:" not in text:
            c.ok(" ".join(path) in blockctl_page, f"blockctl.8 documents '{where}'")
        missing = sorted(o for o in help_options(text.split("Subcommands:")[0]) if o not in blockctl_page)
        c.ok(not missing, f"blockctl.8 documents every option of '{where} --help'", f"missing {missing}")

    toml_page = roff_text(pages[2])
    keys = set(re.findall(r"^#?\s*([a-z_]+)\s*=", read(SAMPLE_CONFIG), re.M))
    c.ok(len(keys) >= 10, f"the sample config has keys ({sorted(keys)})")
    missing = sorted(k for k in keys if not re.search(r"(?<![\w])" + re.escape(k) + r"(?![\w])", toml_page))
    c.ok(not missing, "blockd.toml.5 documents every key of server/examples/blockd.toml", f"missing {missing}")
    for default in ('"[::]:10809"', '"/var/lib/blockd"', '"/run/blockd/control.sock"', '"info"'):
        c.ok(default.strip('"') in toml_page, f"blockd.toml.5 gives the default {default}")


def body(c):
    analyze = shutil.which("systemd-analyze", path=fx.SYSTEM_PATH)
    if analyze is None:
        fx.skip("systemd-analyze is not installed (Debian package systemd)")
    c.require(os.path.isfile(os.path.join(build_dir(), "cmake_install.cmake")),
              f"BLOCKD_BUILD_DIR {build_dir()} is a configured build tree")
    tmp = fx.temp_dir("blockd-units-")
    root = os.path.join(tmp.name, "root")
    install("/usr", root)
    check_layout(c, root)
    verify_in_namespace(c, root, analyze)
    check_prefix_install(c, tmp.name, analyze)
    check_security(c, root, analyze)
    check_config_kept(c, root)
    check_no_capabilities(c, tmp.name)
    try:
        import seccomp  # noqa: F401
        cache = os.path.join(build_dir(), "CMakeCache.txt")
        if os.path.isfile(cache) and "BLOCKD_SANITIZE:BOOL=ON" in read(cache):
            # ASan/LSan need setrlimit and ptrace, which the unit's filter (rightly) forbids.
            raise ImportError("a sanitizer build")
        allowed, errno_name = unit_syscall_filter(os.path.join(root, "usr/lib/systemd/system/blockd.service"),
                                                  analyze)
        c.ok(allowed and {"io_uring_setup", "io_uring_enter", "io_uring_register"} <= allowed,
             "blockd.service's SystemCallFilter= allows io_uring_setup, io_uring_enter, io_uring_register",
             f"{len(allowed or ())} calls allowed")
        if allowed:
            check_no_capabilities(c, tmp.name, allowed, errno_name)
    except ImportError as e:
        print(f"note: blockd is not tried under the unit's SystemCallFilter= ({e or 'no python3-seccomp'})")
    check_man(c)


if __name__ == "__main__":
    if len(sys.argv) > 4 and sys.argv[1] == "--exec-filtered" and sys.argv[4] == "--":
        exec_filtered(sys.argv[2], sys.argv[3], sys.argv[5:])
    fx.test_main(body, timeout=280)
