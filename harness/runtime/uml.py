"""The uml runtime: a peer's image booted under User-Mode Linux (harness.runtime.uml_kernel) with its own kernel.

Root tree: the image's filesystem, exported once per image id into /var/cache/ipsec-interop/rootfs/<id>,
with the UML kernel's modules hard-linked into /usr/lib/modules/<ver> (exported again when the kernel changes).
It is mounted read-only through hostfs and shared by every guest. Each guest gets private writable copies
of etc/, var/ and root/ (cp -a, about 10 MB) in /run/ipsec-interop/<RUN>/uml-rw/<name>/, which its init
mounts over /etc, /var and /root through hostfs (hostfs has no overlay: this is the copy-on-write);
/run, /tmp and /dev are guest tmpfs/devtmpfs.
The guest runs inside the lab namespace (`ip netns exec`); each link is a TAP the runtime makes there and sets up
before the boot (`tap_up` says why), opened by the guest's vector driver (`vecN:transport=tap,ifname=...`), and
kicked every 0.25 s (harness.runtime.uml_kick: a guest can otherwise sit on a frame until its next event).
Control: the agent on the guest's /dev/ttyS0, wired to a socketpair (`ssl0=fd:N`).
Console to <uml_dir>/<name>.log. Stop: agent poweroff, then `uml_mconsole ... halt` (bounded: it can hang
after the guest exited), then SIGKILL to the process group this runtime started. Pid recorded for clean.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from harness.errors import LabError, LabUnavailable
from harness.lab import labels
from harness.runtime import images, uml_kernel
from harness.runtime.agent import AgentChannel, AgentNode
from harness.runtime.base import LinkSpec, NodeSpec, Runtime
from harness.runtime.uml_kick import KICKER

ROOTFS_CACHE = images.CACHE_DIR / "rootfs"
INIT = "/sbin/ipsi-agent"
MEM = "256M"
READY_TIMEOUT = 120.0
WRITABLE = ("etc", "var", "root")
SHARED_READ_ONLY = ("var/lib/dpkg", "var/cache")  # 2/3 of var's files, never written by a peer: mounted, not copied
MODULES = ("ipv6,xfrm_user,xfrm_algo,esp4,ah4,esp6,ah6,xfrm4_tunnel,xfrm6_tunnel,tunnel4,tunnel6,authenc,authencesn,"
           "gcm,ghash_generic,chacha20poly1305,chacha_generic,poly1305_generic,seqiv,echainiv,cbc,ctr,hmac,"
           "sha1_generic,sha256_generic,sha512_generic,xcbc,cmac,ccm,des_generic,aes_generic,af_key,veth,bridge")
MARKER = ".ipsi-rootfs.json"


def kernel_version() -> str:
    """The release of the UML kernel guests boot (LabUnavailable if none is exported)."""
    return uml_kernel.current().release


def rootfs_current(info: images.ImageInfo) -> bool:
    """True if the image's root tree is exported with the current kernel's modules."""
    return _marker_kernel(rootfs_path(info.image_id)) == kernel_version()


def _marker_kernel(path: Path) -> str | None:
    """The kernel release a root tree's modules were linked for, or None if the tree is not (completely) there."""
    try:
        return str(json.loads((path / MARKER).read_text()).get("kernel"))
    except (OSError, ValueError):
        return None


def rootfs_path(image_id: str) -> Path:
    """The cached root tree of an image id."""
    return ROOTFS_CACHE / image_id.split(":")[-1][:16]


def rootfs(info: images.ImageInfo, client: object | None = None) -> tuple[Path, bool]:
    """The image's root tree for UML (exported once, under the build lock); (path, exported_now)."""
    path = rootfs_path(info.image_id)
    kernel = uml_kernel.current()
    if _marker_kernel(path) == kernel.release:
        _complete_marker(path / MARKER, info)
        return path, False
    with images.build_lock():
        if _marker_kernel(path) == kernel.release:
            return path, False
        tmp = images.export_tree(client or images.docker_client(), info, path)
        ver = kernel.release
        dest = tmp / "usr/lib/modules" / ver
        dest.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["cp", "-al", str(kernel.modules), str(dest)], capture_output=True, text=True)
        if r.returncode != 0:  # another filesystem: a real copy
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(kernel.modules, dest, symlinks=True)
        for f in ("etc/hostname", "etc/hosts"):
            (tmp / f).write_text("localhost\n" if f.endswith("hostname") else "127.0.0.1 localhost\n::1 localhost\n")
        (tmp / MARKER).write_text(json.dumps({"image_id": info.image_id, "name": info.name, "version": info.version,
                                              "peer": info.peer, "release": info.release, "hash": info.content_hash,
                                              "kernel": ver}))
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    return path, True


def exported_images(cache: Path | None = None) -> list[images.ImageInfo]:
    """The images whose root tree is exported, from their markers (usable with no Docker daemon running)."""
    cache = cache or ROOTFS_CACHE
    out = []
    for marker in sorted(cache.glob(f"*/{MARKER}")) if cache.is_dir() else []:
        try:
            m = json.loads(marker.read_text())
            out.append(images.ImageInfo(m["name"], m["peer"], m["release"], m["version"], m["image_id"], m["hash"],
                                        f"{images.LABEL}/{m['name']}"))
        except (OSError, ValueError, KeyError):
            continue  # a tree exported before markers named the peer: found through the daemon instead
    return out


def find_exported(name: str) -> images.ImageInfo:
    """A built image for UML: through the Docker daemon if one answers, else from the exported trees' markers."""
    try:
        return images.find_image(name)
    except LabUnavailable as no_daemon:
        if "no Docker daemon" not in str(no_daemon):
            raise
        for info in exported_images():
            if name in (info.name, info.tag, f"{images.LABEL}/{info.peer}:{info.release}"):
                return info
        family = [i for i in exported_images() if i.peer == name]
        if family:
            return max(family, key=lambda i: i.name)
        raise


def prune_rootfs(keep_image_ids: list[str]) -> list[Path]:
    """Remove cached root trees of images that are no longer built; the removed paths."""
    keep = {rootfs_path(i).name for i in keep_image_ids}
    gone = []
    if ROOTFS_CACHE.is_dir():
        with images.build_lock():
            for p in sorted(ROOTFS_CACHE.iterdir()):
                if p.is_dir() and p.name.removesuffix(".tmp") not in keep:
                    shutil.rmtree(p, ignore_errors=True)
                    gone.append(p)
    return gone


def _complete_marker(marker: Path, info: images.ImageInfo) -> None:
    """Add the peer, release and hash to a marker written before markers carried them."""
    try:
        m = json.loads(marker.read_text())
    except (OSError, ValueError):
        return
    if "peer" not in m:
        m.update(peer=info.peer, release=info.release, hash=info.content_hash)
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(m))
        tmp.replace(marker)


def command_line(name: str, uml_dir: Path, root: Path, rw: Path, links: Sequence[LinkSpec],
                 env: dict[str, str], mem: str = MEM, guest_fd: int = 3, binary: str | Path = "linux.uml") -> list[str]:
    """The linux.uml argv for one guest (pure): umid, hostfs root read-only, TAPs, console, control line, env."""
    argv = [str(binary), f"umid={name}", f"uml_dir={uml_dir}", f"mem={mem}", "root=/dev/root", "rootfstype=hostfs",
            f"rootflags={root}", "ro", f"init={INIT}"]
    for i, link in enumerate(links):
        if not link.guest_ifname.startswith("eth") or not link.guest_ifname[3:].isdigit():
            raise LabError(f"{name}: UML names its links ethN, not {link.guest_ifname!r}")
        if len(link.host_ifname) > 15:
            raise LabError(f"{name}: link name {link.host_ifname!r} is longer than 15 characters")
        # the vector driver's TAP transport (the older ethN=tuntap driver is gone from UML since 6.15): the guest
        # sees vecN, which its agent renames to the link's guest name (IPSI_IFNAMES)
        argv.append(f"vec{i}:transport=tap,ifname={link.host_ifname},mac={link.mac}")
    argv += ["con=null", "ssl=null", "con0=null,fd:1", f"ssl0=fd:{guest_fd}"]
    ifnames = ",".join(f"vec{i}={link.guest_ifname}" for i, link in enumerate(links))
    full_env = {"IPSI_RUNTIME": "uml", "IPSI_ROOT": str(root), "IPSI_RW": str(rw), "IPSI_HOSTNAME": name,
                "IPSI_SHARED": ",".join(SHARED_READ_ONLY), "IPSI_MODULES": MODULES,
                **({"IPSI_IFNAMES": ifnames} if ifnames else {}), **env}
    for k, v in full_env.items():
        if not k.isidentifier() or any(c.isspace() for c in v) or "." in k:
            raise LabError(f"{name}: environment {k}={v!r} cannot pass through the kernel command line")
        argv.append(f"{k}={v}")
    return argv


def tap_up(lab_netns: str, ifname: str) -> str:
    """Make a guest's TAP in the lab namespace and set it up before the guest opens it; the TAP's name. UML's vector
    driver never reads a TAP whose host side was down when the guest brought its link up (measured with kernel 7.2:
    the host side set up a moment later, 0 of 3 echo requests answered, the guest's rx counter 0; set up first, 3
    of 3), so the lab must not leave that to a race with the guest's boot."""
    for argv in (["ip", "-n", lab_netns, "tuntap", "add", "mode", "tap", "name", ifname],
                 ["ip", "-n", lab_netns, "link", "set", "dev", ifname, "up"]):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise LabError(f"TAP {ifname} in {lab_netns}: {' '.join(argv)} exited {r.returncode}: {r.stderr.strip()}")
    return ifname


def copy_writable(root: Path, rw: Path) -> None:
    """The guest's private etc/, var/ (minus SHARED_READ_ONLY, left as empty mount points) and root/ (tar | tar)."""
    excludes = [f"--exclude=./{d}/*" for d in SHARED_READ_ONLY]
    pack = subprocess.Popen(["tar", "-C", str(root), "-c", *excludes, *(f"./{d}" for d in WRITABLE)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    unpack = subprocess.run(["tar", "-C", str(rw), "-x", "--numeric-owner"], stdin=pack.stdout, capture_output=True)
    assert pack.stdout and pack.stderr
    pack.stdout.close()
    err = pack.stderr.read()
    if pack.wait() != 0 or unpack.returncode != 0:
        raise LabError(f"copying the writable folders of {root} to {rw}: {(err + unpack.stderr).decode(errors='replace').strip()}")


def _pss_kib(pid: int) -> int:
    """Proportional set size of every process in pid's process group, KiB (0 if none can be read)."""
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.getpgid(int(d.name)) != pid:
                continue
            for line in (d / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


class UmlNode(AgentNode):
    """A running UML guest."""

    runtime = "uml"

    def __init__(self, name: str, spec: NodeSpec, info: images.ImageInfo, uml_dir: Path, rw: Path, run: str) -> None:
        self.name, self.image, self.version, self.role = name, info.name, info.version, spec.role
        self.uml_dir, self.rw, self.run = uml_dir, rw, run
        self.console = uml_dir / f"{name}.log"
        self.kernel = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.argv: list[str] = []
        self.timings: dict[str, float] = {}
        self.taps: list[tuple[str, str]] = []  # (lab namespace, TAP) made for this guest, deleted when it stops
        self._stopped = False

    @property
    def pid(self) -> int:
        """The linux.uml process (also its process group)."""
        return self.proc.pid if self.proc else 0

    @property
    def alive(self) -> bool:
        """True while the UML process runs."""
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        """The guest's console (kernel messages and the agent's log)."""
        try:
            return self.console.read_text(errors="replace")
        except OSError:
            return "(no console log)"

    def memory_kib(self) -> int:
        """Proportional set size of the guest's host processes, KiB."""
        return _pss_kib(self.pid) if self.alive else 0

    def stop(self) -> None:
        """Power the guest off (agent, then mconsole halt, bounded), then SIGKILL its process group; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.proc is not None:
            if self.alive and getattr(self, "channel", None):
                try:
                    self.channel.request({"op": "poweroff"}, 3.0)
                except LabError:
                    pass
            self._wait(3.0)
            if self.alive:
                try:
                    subprocess.run(["uml_mconsole", str(self.uml_dir / self.name / "mconsole"), "halt"],
                                   capture_output=True, timeout=5)
                except (subprocess.TimeoutExpired, FileNotFoundError):
                    pass
                self._wait(3.0)
            if self.alive:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)  # the group this runtime started for the guest
                except ProcessLookupError:
                    pass
                self._wait(5.0)
            # UML helper processes may outlive the main one for a moment; the group is ours alone
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            labels.forget_pid(self.run, self.proc.pid)
        if getattr(self, "channel", None):
            self.channel.close()
        for ns, tap in self.taps:
            KICKER.remove(ns, tap)
            subprocess.run(["ip", "-n", ns, "link", "delete", tap], capture_output=True, timeout=10)
        shutil.rmtree(self.rw, ignore_errors=True)
        shutil.rmtree(self.uml_dir / self.name, ignore_errors=True)

    def _wait(self, seconds: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pass


class UmlRuntime(Runtime):
    """Guests with their own Linux kernel (linux.uml) on hostfs root trees of the peers' images."""

    name = "uml"

    def __init__(self, mem: str = MEM, **_: object) -> None:
        self.mem = mem

    def unavailable(self) -> str | None:
        """Why guests cannot boot here (no UML kernel exported, not root), or None."""
        if os.geteuid() != 0:
            return "needs root (TAPs in the lab namespace)"
        try:
            uml_kernel.current()
        except LabUnavailable as e:
            return str(e)
        return None

    def start(self, spec: NodeSpec, lab_netns: str, links: Sequence[LinkSpec]) -> UmlNode:
        """Boot the image's root tree in lab_netns with one TAP per link; return once the agent is ready."""
        reason = self.unavailable()
        if reason:
            raise LabUnavailable(f"runtime uml: {reason}")
        t0 = time.monotonic()
        run = labels.check_run_id(spec.run or labels.current_run_id())
        worker = labels.worker_index() if spec.worker is None else spec.worker
        name = labels.resource_name(run, worker, spec.name)
        info = find_exported(spec.image)
        root, _ = rootfs(info)
        state = labels.state_dir(run)
        uml_dir = state / "uml"
        rw = state / "uml-rw" / name
        if (uml_dir / name).exists() or rw.exists():
            raise LabError(f"{name}: a guest of this name exists already ({uml_dir / name})")
        uml_dir.mkdir(parents=True, exist_ok=True)
        rw.mkdir(parents=True)
        node = UmlNode(name, spec, info, uml_dir, rw, run)
        try:
            copy_writable(root, rw)
            for link in links:
                node.taps.append((lab_netns, tap_up(lab_netns, link.host_ifname)))
            node.timings["copy"] = time.monotonic() - t0
            host_end, guest_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                node.argv = command_line(name, uml_dir, root, rw, links, dict(spec.env), self.mem, guest_end.fileno(),
                                         uml_kernel.current().binary)
                with open(node.console, "wb") as console:
                    node.proc = subprocess.Popen(
                        ["ip", "netns", "exec", lab_netns, *node.argv], stdin=subprocess.DEVNULL, stdout=console,
                        stderr=subprocess.STDOUT, pass_fds=(guest_end.fileno(),), start_new_session=True)
            finally:
                guest_end.close()
            labels.record_pid(run, node.proc.pid, f"uml {name}", node.argv)
            node.channel = AgentChannel(host_end, name, node.logs, nudge=True)
            ready = node.channel.wait_ready(spec.ready_timeout or READY_TIMEOUT, lambda: node.alive)
            node.kernel = str(ready.get("kernel", ""))
            missing = [m for m in ready.get("modules_missing", []) if m in ("esp4", "ah4", "xfrm_user")]
            if missing:
                raise LabError(f"{name}: the guest kernel could not load {', '.join(missing)}\n{node.logs()[-3000:]}")
            for link in links:  # harness.runtime.uml_kick says why
                KICKER.add(lab_netns, link.host_ifname, link.mac)
        except BaseException:
            node.stop()
            raise
        node.timings["ready"] = time.monotonic() - t0
        return node


RUNTIME_CLASS = UmlRuntime
