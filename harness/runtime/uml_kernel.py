"""The UML kernel the uml runtime boots: Debian's user-mode-linux from the image peers/uml-kernel, exported once.

The tree (CACHE/<image id[:16]>/) holds the package's linux.uml, its modules (usr/lib/uml/modules/<release>)
and the libc it is linked against. BINARY in it is that linux.uml with its ELF interpreter and library path set
to the tree's own loader and libc (patchelf), so it runs on a host whose libc is older (bookworm's 2.36; the
package needs 2.38). Running it through the tree's loader instead (`ld.so linux.uml`) does not work: UML sizes
its physical memory from the gap to the program break, which the loader places far away. Why this kernel
and not the host's: peers/uml-kernel/Dockerfile. A marker names the tree, so guests boot with no Docker daemon.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import LabError, LabUnavailable
from harness.runtime import images

CACHE = images.CACHE_DIR / "uml-kernel"
MARKER = ".ipsi-kernel.json"
BINARY = "ipsi-linux.uml"
MODULES = Path("usr/lib/uml/modules")
LOADER = Path("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
LIBS = Path("usr/lib/x86_64-linux-gnu")


@dataclass(frozen=True)
class Kernel:
    """An exported UML kernel: its tree, kernel release (uname -r), package version and image id."""

    tree: Path
    release: str
    version: str
    image_id: str

    @property
    def binary(self) -> Path:
        """The linux.uml to run (patched to the tree's loader and libc)."""
        return self.tree / BINARY

    @property
    def modules(self) -> Path:
        """The kernel's modules folder (…/usr/lib/uml/modules/<release>)."""
        return self.tree / MODULES / self.release


def release_of(modules: Path) -> str:
    """The kernel release of a modules folder (its one subfolder); LabUnavailable if there is none."""
    versions = sorted(p.name for p in modules.iterdir() if p.is_dir()) if modules.is_dir() else []
    if not versions:
        raise LabUnavailable(f"no UML kernel modules in {modules} (Debian package user-mode-linux)")
    return versions[-1]


def tree_path(image_id: str) -> Path:
    """The exported tree of a kernel image id."""
    return CACHE / image_id.split(":")[-1][:16]


def _read(marker: Path) -> Kernel | None:
    try:
        m = json.loads(marker.read_text())
        return Kernel(marker.parent, str(m["release"]), str(m["version"]), str(m["image_id"]))
    except (OSError, ValueError, KeyError):
        return None


def exported() -> Kernel | None:
    """The exported kernel (the newest marker if several), or None: found without a Docker daemon."""
    markers = sorted(CACHE.glob(f"*/{MARKER}"), key=lambda p: p.stat().st_mtime) if CACHE.is_dir() else []
    for marker in reversed(markers):
        if (k := _read(marker)) and k.binary.exists():
            return k
    return None


def current() -> Kernel:
    """The kernel guests boot: the exported one; LabUnavailable saying how to get one if none is."""
    k = exported()
    if k is None:
        raise LabUnavailable(f"no UML kernel exported in {CACHE}: run `ipsec-interop setup`, which builds "
                             f"{images.kernel_def().tag} and exports it")
    return k


def exported_for(image_id: str) -> Kernel | None:
    """The kernel exported from image_id, or None if it is not (completely) exported."""
    k = _read(tree_path(image_id) / MARKER)
    return k if k and k.binary.exists() else None


def export(info: images.ImageInfo, client: Any | None = None) -> tuple[Kernel, bool]:
    """The kernel image's tree, exported and patched once (under the build lock); (kernel, exported_now)."""
    path = tree_path(info.image_id)
    if k := exported_for(info.image_id):
        return k, False
    if not shutil.which("patchelf"):
        raise LabUnavailable("patchelf is not installed (Debian package patchelf): the UML kernel needs it to run "
                             "with its own libc")
    with images.build_lock():
        tmp = images.export_tree(client or images.docker_client(), info, path)
        release = release_of(tmp / MODULES)
        shutil.copy2(tmp / "usr/bin/linux.uml", tmp / BINARY)
        r = subprocess.run(["patchelf", "--set-interpreter", str(path / LOADER), "--set-rpath", str(path / LIBS),
                            str(tmp / BINARY)], capture_output=True, text=True)
        if r.returncode != 0:
            raise LabError(f"patchelf {tmp / BINARY} failed (exit {r.returncode}): {r.stderr.strip()}")
        (tmp / MARKER).write_text(json.dumps({"image_id": info.image_id, "version": info.version, "release": release}))
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    k = _read(path / MARKER)
    assert k is not None
    return k, True


def prune(keep_image_id: str) -> list[Path]:
    """Remove exported kernels other than keep_image_id's; the removed paths."""
    keep = tree_path(keep_image_id).name
    gone = []
    if CACHE.is_dir():
        with images.build_lock():
            for p in sorted(CACHE.iterdir()):
                if p.is_dir() and p.name.removesuffix(".tmp") != keep:
                    shutil.rmtree(p, ignore_errors=True)
                    gone.append(p)
    return gone
