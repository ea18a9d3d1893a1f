"""`ipsec-interop setup`: a Docker daemon without bridge or NAT, the peers' images, their UML root trees, the probe.

Idempotent and quick when everything is there: a daemon that answers is used as it is; images are rebuilt
only when their inputs change (harness/runtime/images.py); root trees are exported once per image id.
The daemon this command starts, and its settings, are harness/runtime/dockerd.py's; it is left running for
later runs. Without docker.io, already exported UML root trees still run (runtime uml).
"""
from __future__ import annotations

import argparse
import time

from harness.errors import LabUnavailable
from harness.progress import say, step
from harness.runtime import dockerd, images


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-build", action="store_true", help="only make sure a Docker daemon answers")
    p.add_argument("--force", action="store_true", help="rebuild the images even if cached")
    p.add_argument("--only", action="append", default=[], help="build only this peer (strongswan, libreswan) or tag")
    p.add_argument("--no-export", action="store_true", help="do not export the UML root trees now")


def without_docker(why: LabUnavailable) -> int:
    """No daemon can be had: say what the lab can still do (exported UML trees) and what to do; exit status."""
    from harness.runtime.uml import exported_images

    trees = sorted({i.name for i in exported_images()})
    if trees:
        say(f"setup: {why}")
        say(f"setup: using the exported UML root trees of {', '.join(trees)} (runtime uml; no rebuild possible)")
    else:
        say(f"setup: {why}; no UML root tree is exported either, so the lab tests will be skipped")
    return 0


def run(args: argparse.Namespace) -> int:
    """Daemon, images, root trees, probe; a missing tool (LabUnavailable) is reported and exits 0: lab tests then skip."""
    t0 = time.monotonic()
    try:
        say(dockerd.ensure())
    except LabUnavailable as e:
        return without_docker(e)
    if args.no_build:
        return 0
    kernel = images.build_kernel(force=args.force)
    built = images.build_all(force=args.force, only=args.only or None)
    for info, now, seconds in [kernel, *built]:
        say(f"{info.name:16} {info.version:24} {info.release:9} {'built' if now else 'cached'} {seconds:6.1f} s  {info.image_id[7:19]}")
    if not args.no_export:
        from harness.runtime import uml, uml_kernel

        k = uml_kernel.exported_for(kernel[0].image_id)
        if k is None:
            with step(f"exporting the UML kernel {kernel[0].version}"):
                k, _ = uml_kernel.export(kernel[0])
        for p in uml_kernel.prune(kernel[0].image_id):
            say(f"removed the stale UML kernel {p}")
        say(f"UML kernel {k.release} ({k.version}): {k.binary}")
        for info, _, _ in built:
            if uml.rootfs_current(info):
                uml.rootfs(info)  # cached: completes an older marker only
                continue
            with step(f"exporting the UML root tree of {info.name}"):
                uml.rootfs(info)
        if not args.only:
            for p in uml.prune_rootfs([i.image_id for i in images.built_images()]):
                say(f"removed the stale UML root tree {p}")
    from harness.runtime.probe import probe

    say(probe().describe())
    say(f"setup done in {time.monotonic() - t0:.1f} s")
    return 0
