"""The reference peers' images: debootstrap bases, cached builds keyed by a content hash, version labels.

Without a registry the base of each Debian release is made once with `debootstrap --variant=minbase` from
the host's own Debian mirror and imported as `ipsec-interop/base:<release>`. A peer image is rebuilt only
when the hash of its inputs changes: its folder (minus templates/, which the adapters fill at run time),
peers/common/, the release and the base image id; the hash is the image label `ipsec-interop.hash`.
After a build the peer's exact package version is read from /etc/ipsec-interop-peer.json in the image and
becomes labels (`ipsec-interop.version`, `ipsec-interop.name`) and the tag `ipsec-interop/<name>` (e.g.
ipsec-interop/strongswan-5.9). Builds run one at a time per host behind a file lock.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError, LabError, LabUnavailable
from harness.progress import say as progress_say, step

REPO = Path(__file__).resolve().parents[2]
PEERS_DIR = REPO / "peers"
IMAGES_FILE = PEERS_DIR / "images.json"
CACHE_DIR = Path(os.environ.get("IPSEC_INTEROP_CACHE", "/var/cache/ipsec-interop"))
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SOURCES_FILES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
LABEL = "ipsec-interop"
HASH_EXCLUDE = ("templates/",)
BUILD_TIMEOUT = 1800
KERNEL_PEER = "uml-kernel"  # the UML kernel's image folder and label: built like a peer's, never listed as one


@dataclass(frozen=True)
class ImageDef:
    """One image to build: a peer folder under peers/, a Debian release, the package whose version names it."""

    peer: str
    release: str
    package: str

    @property
    def tag(self) -> str:
        """The build tag, one per peer and release."""
        return f"{LABEL}/{self.peer}:{self.release}"

    @property
    def folder(self) -> Path:
        """The peer's folder (Dockerfile, templates)."""
        return PEERS_DIR / self.peer


@dataclass(frozen=True)
class ImageInfo:
    """A built image: the peer name (e.g. strongswan-5.9), its exact package version, release, id and hash."""

    name: str
    peer: str
    release: str
    version: str
    image_id: str
    content_hash: str
    tag: str

    @classmethod
    def from_labels(cls, image_id: str, labels: dict[str, str]) -> "ImageInfo":
        """Read an ImageInfo from an image's labels (LabError naming the missing label)."""
        try:
            return cls(labels[f"{LABEL}.name"], labels[f"{LABEL}.peer"], labels[f"{LABEL}.release"],
                       labels[f"{LABEL}.version"], image_id, labels[f"{LABEL}.hash"], f"{LABEL}/{labels[f'{LABEL}.name']}")
        except KeyError as e:
            raise LabError(f"image {image_id[:19]}: missing label {e.args[0]}") from None


def _images_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def _image_def(d: Any, where: str) -> ImageDef:
    try:
        return ImageDef(str(d["peer"]), str(d["release"]), str(d["package"]))
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{where}: missing key {e}") from None


def image_defs(path: Path = IMAGES_FILE) -> list[ImageDef]:
    """The peers' images to build, from peers/images.json (ConfigError naming the file and key)."""
    return [_image_def(d, f"{path}: images[{i}]") for i, d in enumerate(_images_file(path).get("images", []))]


def kernel_def(path: Path = IMAGES_FILE) -> ImageDef:
    """The UML kernel's image (peers/images.json "uml_kernel"): not a peer, the kernel the uml runtime boots."""
    return _image_def(_images_file(path).get("uml_kernel"), f"{path}: uml_kernel")


def content_hash(folder: Path, common: Path, release: str, base_id: str, exclude: tuple[str, ...] = HASH_EXCLUDE) -> str:
    """sha256 over the build inputs: every file of folder (minus exclude prefixes) and common, names, modes, bytes."""
    h = hashlib.sha256()
    h.update(f"release={release}\0base={base_id}\0".encode())
    for root_name, root in (("peer", folder), ("common", common)):
        if not root.is_dir():
            continue
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if not p.is_file() or "__pycache__" in rel or any(rel.startswith(x) for x in exclude):
                continue
            h.update(f"{root_name}/{rel}\0{p.stat().st_mode & 0o777:o}\0".encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def host_mirror(files: tuple[Path, ...] = SOURCES_FILES) -> str:
    """The Debian mirror the host's apt uses (first URI ending in /debian), else deb.debian.org."""
    texts = []
    for f in files:
        if f.is_dir():
            texts += [p.read_text(errors="replace") for p in sorted(f.iterdir()) if p.suffix in (".list", ".sources")]
        elif f.is_file():
            texts.append(f.read_text(errors="replace"))
    for text in texts:
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            m = re.match(r"^URIs:\s*(.+)$", line) or re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s", line)
            if not m:
                continue
            for uri in m.group(1).split():
                if uri.rstrip("/").endswith("/debian"):
                    return uri.rstrip("/")
    return DEFAULT_MIRROR


def sources_list(mirror: str, release: str) -> str:
    """The base image's apt sources: release, its updates and its security suite, from mirror."""
    security = mirror[: -len("/debian")] + "/debian-security" if mirror.endswith("/debian") else mirror
    return (f"deb {mirror} {release} main\n"
            f"deb {mirror} {release}-updates main\n"
            f"deb {security} {release}-security main\n")


def docker_client(timeout: int = 600) -> Any:
    """A docker SDK client to a daemon that answers; LabUnavailable (with the reason) if none does."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise LabUnavailable("the docker Python package is not installed") from None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (DockerException, OSError) as e:
        raise LabUnavailable(f"no Docker daemon answers ({e}): run `ipsec-interop setup`, which starts one") from None
    return client


def _labels(client: Any, ref: str) -> tuple[str, dict[str, str]] | None:
    from docker.errors import ImageNotFound

    try:
        img = client.images.get(ref)
    except ImageNotFound:
        return None
    return img.id, dict(img.labels or {})


def _run(argv: list[str], what: str, input: bytes | None = None, timeout: float = BUILD_TIMEOUT) -> str:
    try:
        p = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"{what}: no result within {timeout} s") from None
    if p.returncode != 0:
        tail = (p.stdout + p.stderr).decode(errors="replace")[-3000:]
        raise LabError(f"{what} failed (exit {p.returncode}):\n{tail}")
    return p.stdout.decode(errors="replace")


def base_tag(release: str) -> str:
    """The tag of the debootstrap-made base of a release."""
    return f"{LABEL}/base:{release}"


def ensure_base(client: Any, release: str, say: Callable[[str], None] = progress_say, mirror: str | None = None) -> str:
    """The base image of release (made with debootstrap and imported if absent); returns its id."""
    found = _labels(client, base_tag(release))
    if found:
        return found[0]
    mirror = mirror or host_mirror()
    if not shutil.which("debootstrap"):
        raise LabUnavailable("debootstrap is not installed (Debian package debootstrap)")
    work = CACHE_DIR / "debootstrap"
    work.mkdir(parents=True, exist_ok=True)
    tree = Path(tempfile.mkdtemp(prefix=f"{release}.", dir=work))
    try:
        with step(f"making the {release} base with debootstrap from {mirror}", say):
            _run(["debootstrap", "--variant=minbase", release, str(tree), mirror], f"debootstrap {release}")
        (tree / "etc/apt/sources.list").write_text(sources_list(mirror, release))
        for p in (tree / "var/cache/apt/archives").glob("*.deb"):
            p.unlink()
        with step(f"importing the {release} tree as {base_tag(release)}", say):
            tar = subprocess.Popen(["tar", "-C", str(tree), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
            try:
                _run(["docker", "import", "--change", f"LABEL {LABEL}.base={release}", "-", base_tag(release)],
                     f"docker import {release}", input=tar.stdout.read() if tar.stdout else b"")
            finally:
                tar.wait()
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    found = _labels(client, base_tag(release))
    if not found:
        raise LabError(f"{base_tag(release)} is missing right after docker import")
    return found[0]


def cached(client: Any, d: ImageDef, want_hash: str) -> ImageInfo | None:
    """The built image of d if its content hash is want_hash, else None."""
    found = _labels(client, d.tag)
    if not found or found[1].get(f"{LABEL}.hash") != want_hash or f"{LABEL}.version" not in found[1]:
        return None
    return ImageInfo.from_labels(*found)


def build(client: Any, d: ImageDef, base: str | None = None, force: bool = False,
          say: Callable[[str], None] = progress_say) -> tuple[ImageInfo, bool]:
    """Build d unless cached (same content hash); returns (info, built_now). base: a registry image to use instead."""
    base_ref = base or base_tag(d.release)
    base_id = ensure_base(client, d.release, say) if base is None else base
    h = content_hash(d.folder, PEERS_DIR / "common", d.release, base_id)
    if not force and (info := cached(client, d, h)):
        return info, False
    stage = f"{d.tag}-stage"
    with step(f"building {d.tag} ({d.peer} on Debian {d.release})", say):
        _run(["docker", "build", "--network", "host", "-q", "-f", str(d.folder / "Dockerfile"),
              "--build-arg", f"BASE={base_ref}", "--build-arg", f"RELEASE={d.release}",
              "--label", f"{LABEL}.peer={d.peer}", "--label", f"{LABEL}.release={d.release}",
              "-t", stage, str(PEERS_DIR)], f"docker build {d.tag}")
    raw = client.containers.run(stage, entrypoint=["cat"], command=["/etc/ipsec-interop-peer.json"],
                                network_mode="none", remove=True)
    try:
        peer_info = json.loads(raw)
        name, version = str(peer_info["name"]), str(peer_info["version"])
    except (ValueError, KeyError) as e:
        raise LabError(f"{d.tag}: /etc/ipsec-interop-peer.json unreadable: {e}: {raw[:200]!r}") from None
    labels = {f"{LABEL}.hash": h, f"{LABEL}.version": version, f"{LABEL}.name": name,
              f"{LABEL}.upstream": str(peer_info.get("upstream", "")), f"{LABEL}.debian": str(peer_info.get("debian", ""))}
    dockerfile = f"FROM {stage}\n" + "".join(f'LABEL {k}="{v}"\n' for k, v in labels.items())
    _run(["docker", "build", "-q", "-t", d.tag, "-t", f"{LABEL}/{name}:latest", "-"], f"label {d.tag}",
         input=dockerfile.encode(), timeout=120)
    client.images.remove(stage, noprune=True)
    client.images.prune(filters={"dangling": True, "label": f"{LABEL}.peer"})  # the image this build replaced
    found = _labels(client, d.tag)
    if not found:
        raise LabError(f"{d.tag} is missing right after its build")
    say(f"built {LABEL}/{name} ({version})")
    return ImageInfo.from_labels(*found), True


def export_tree(client: Any, info: ImageInfo, path: Path) -> Path:
    """Unpack an image's filesystem into a fresh path.tmp beside path (a container created and removed for it, never
    started) and return it: the caller completes it and renames it to path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dest = path.with_name(path.name + ".tmp")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    container = client.containers.create(info.image_id, network_mode="none", labels={f"{LABEL}.export": info.name})
    try:
        tar = subprocess.Popen(["tar", "-x", "--numeric-owner", "-C", str(dest)], stdin=subprocess.PIPE)
        assert tar.stdin
        try:
            for chunk in container.export():
                tar.stdin.write(chunk)
        finally:
            tar.stdin.close()
            if tar.wait(timeout=300) != 0:
                raise LabError(f"exporting {info.name}: tar exited {tar.returncode}")
    finally:
        container.remove(force=True)
    return dest


def build_lock() -> Any:
    """The host-wide file lock that keeps builds one at a time (also across xdist workers)."""
    from filelock import FileLock

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    return FileLock(str(CACHE_DIR / "build.lock"), timeout=BUILD_TIMEOUT)


def build_all(client: Any | None = None, force: bool = False, only: list[str] | None = None,
              say: Callable[[str], None] = progress_say) -> list[tuple[ImageInfo, bool, float]]:
    """Build every image (or those whose peer or tag is in only), one at a time; (info, built_now, seconds) each."""
    client = client or docker_client()
    out = []
    with build_lock():
        for d in image_defs():
            if only and d.peer not in only and d.tag not in only:
                continue
            t0 = time.monotonic()
            info, built = build(client, d, force=force, say=say)
            out.append((info, built, time.monotonic() - t0))
    return out


def build_kernel(client: Any | None = None, force: bool = False,
                 say: Callable[[str], None] = progress_say) -> tuple[ImageInfo, bool, float]:
    """Build the UML kernel's image unless cached; (info, built_now, seconds)."""
    client = client or docker_client()
    t0 = time.monotonic()
    with build_lock():
        info, built = build(client, kernel_def(), force=force, say=say)
    return info, built, time.monotonic() - t0


def built_images(client: Any | None = None) -> list[ImageInfo]:
    """Every built peer image (one per peer name), from their labels; empty if no daemon answers."""
    try:
        client = client or docker_client(timeout=10)
    except LabUnavailable:
        return []
    out: dict[str, ImageInfo] = {}
    for img in client.images.list(filters={"label": f"{LABEL}.name"}):
        try:
            info = ImageInfo.from_labels(img.id, dict(img.labels or {}))
        except LabError:
            continue
        if info.peer != KERNEL_PEER:
            out.setdefault(info.name, info)
    return sorted(out.values(), key=lambda i: i.name)


def built_peers() -> list[str]:
    """Names of the peers whose image is built (e.g. libreswan-4.10, strongswan-6.0); with no Docker daemon,
    those whose UML root tree is exported (the uml runtime needs no daemon)."""
    found = [i.name for i in built_images()]
    if found:
        return found
    from harness.runtime.uml import exported_images

    return sorted({i.name for i in exported_images()})


def find_image(name: str, client: Any | None = None) -> ImageInfo:
    """A built image by peer name (strongswan-5.9), peer (strongswan: the newest built) or tag; LabUnavailable if none."""
    images = built_images(client)
    exact = [i for i in images if name in (i.name, i.tag, f"{i.tag}:latest", i.image_id, f"{LABEL}/{i.peer}:{i.release}")]
    if exact:
        return exact[0]
    family = [i for i in images if i.peer == name]
    if family:
        return max(family, key=lambda i: tuple(int(x) if x.isdigit() else 0 for x in re.split(r"[.-]", i.name.split("-", 1)[1])))
    known = ", ".join(i.name for i in images) or "none"
    raise LabUnavailable(f"no image for peer {name!r} (built: {known}); run `ipsec-interop setup`")
