"""`ipsec-interop peers`: the peers built here (version, Debian release, image), whether each can boot under UML,
and the runtimes this host offers with the one `--runtime auto` picks. Builds nothing."""
from __future__ import annotations

import argparse

from harness.errors import LabUnavailable
from harness.runtime import images, uml
from harness.runtime.probe import probe


def add_arguments(p: argparse.ArgumentParser) -> None:
    """No options: it reads the images' labels, the exported root trees and the kernel probe."""


def run(args: argparse.Namespace) -> int:
    """Print one line per peer, then the runtimes; exit 1 when no peer is built (`ipsec-interop setup` builds them)."""
    built = images.built_images()
    source = "Docker images"
    if not built:
        built, source = uml.exported_images(), "exported UML root trees (no Docker daemon answers)"
    if not built:
        print("no peer is built: run `ipsec-interop setup` (or `bash harness/run.sh interop`)")
        return 1
    try:
        kernel = uml.kernel_version()
        runtimes = [f"uml (kernel {kernel})", "external (--profile FILE)"]
    except LabUnavailable as e:
        kernel, runtimes = "", [f"external (--profile FILE); not uml: {e}"]
    print(f"peers ({source}):")
    for info in sorted({i.name: i for i in built}.values(), key=lambda i: i.name):
        tree = ("uml ready" if kernel and uml.rootfs_current(info)
                else "uml: root tree not exported for this kernel (setup exports it)")
        print(f"  {info.name:16} {info.version:24} Debian {info.release:9} {info.image_id[7:19]}  {tree}")
    found = probe()
    if found.esp:
        runtimes.insert(0, "docker")
    print(f"runtimes: {', '.join(runtimes)}")
    print(found.describe())
    return 0
