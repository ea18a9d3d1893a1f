"""The UML command line, root tree cache paths and pruning (no guest is booted here)."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import LabError, LabUnavailable
from harness.runtime import uml, uml_kernel
from harness.runtime.base import LinkSpec

LINKS = [LinkSpec("eth0", "02:49:00:00:01:00", "peer.0"), LinkSpec("eth1", "02:49:00:00:01:ff", "peer.m")]


def test_command_line_boots_a_read_only_hostfs_root_with_taps_and_a_control_line() -> None:
    argv = uml.command_line("ipsi-0123abcd-0-peer", Path("/run/u"), Path("/cache/root"), Path("/run/rw/p"), LINKS,
                            {"X": "1"}, "256M", 7, "/k/ipsi-linux.uml")
    assert argv[0] == "/k/ipsi-linux.uml"
    for a in ("umid=ipsi-0123abcd-0-peer", "uml_dir=/run/u", "mem=256M", "root=/dev/root", "rootfstype=hostfs",
              "rootflags=/cache/root", "ro", "init=/sbin/ipsi-agent", "vec0:transport=tap,ifname=peer.0,mac=02:49:00:00:01:00",
              "vec1:transport=tap,ifname=peer.m,mac=02:49:00:00:01:ff", "IPSI_IFNAMES=vec0=eth0,vec1=eth1", "con=null", "ssl=null", "con0=null,fd:1", "ssl0=fd:7",
              "IPSI_RUNTIME=uml", "IPSI_RW=/run/rw/p", "IPSI_HOSTNAME=ipsi-0123abcd-0-peer", "X=1"):
        assert a in argv, a
    mods = next(a for a in argv if a.startswith("IPSI_MODULES=")).split("=", 1)[1].split(",")
    for m in ("esp4", "ah4", "xfrm_user", "xfrm4_tunnel", "authenc", "authencesn", "gcm", "chacha20poly1305", "seqiv",
              "echainiv", "cbc", "ctr", "hmac", "sha512_generic", "ipv6", "esp6", "ah6"):
        assert m in mods, m
    assert argv.index("con0=null,fd:1") > argv.index("vec1:transport=tap,ifname=peer.m,mac=02:49:00:00:01:ff")


@pytest.mark.parametrize("links, env, match", [
    ([LinkSpec("wan0", "02:00:00:00:00:01", "p.0")], {}, "ethN"),
    ([LinkSpec("eth0", "02:00:00:00:00:01", "a-very-long-name0")], {}, "15 characters"),
    ([], {"K": "two words"}, "kernel command line"),
    ([], {"a.b": "x"}, "kernel command line"),
])
def test_command_line_refuses_what_uml_cannot_take(links: list[LinkSpec], env: dict[str, str], match: str) -> None:
    with pytest.raises(LabError, match=match):
        uml.command_line("n", Path("/u"), Path("/r"), Path("/w"), links, env)


def test_kernel_release_is_the_modules_folder(tmp_path: Path) -> None:
    with pytest.raises(LabUnavailable, match="user-mode-linux"):
        uml_kernel.release_of(tmp_path)
    (tmp_path / "7.2.7").mkdir()
    assert uml_kernel.release_of(tmp_path) == "7.2.7"


def test_the_kernel_is_found_by_its_marker_without_a_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setattr(uml_kernel, "CACHE", tmp_path)
    with pytest.raises(LabUnavailable, match="ipsec-interop setup"):
        uml_kernel.current()
    tree = tmp_path / ("e" * 16)
    tree.mkdir()
    (tree / uml_kernel.MARKER).write_text(json.dumps({"image_id": "sha256:" + "e" * 64, "version": "7.2um1",
                                                      "release": "7.2.7"}))
    assert uml_kernel.exported() is None  # a marker without its patched binary is not a kernel
    assert uml_kernel.exported_for("sha256:" + "e" * 64) is None
    (tree / uml_kernel.BINARY).write_bytes(b"")
    k = uml_kernel.current()
    assert uml_kernel.exported_for("sha256:" + "e" * 64) == k and uml_kernel.exported_for("sha256:" + "f" * 64) is None
    assert (k.release, k.binary, k.modules) == ("7.2.7", tree / uml_kernel.BINARY, tree / "usr/lib/uml/modules/7.2.7")


def test_root_trees_are_keyed_by_image_id_and_stale_ones_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uml, "ROOTFS_CACHE", tmp_path / "rootfs")
    monkeypatch.setattr(uml.images, "CACHE_DIR", tmp_path)
    keep, stale = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert uml.rootfs_path(keep).name == "a" * 16
    for i in (keep, stale):
        uml.rootfs_path(i).mkdir(parents=True)
    (tmp_path / "rootfs" / ("c" * 16 + ".tmp")).mkdir()
    gone = uml.prune_rootfs([keep])
    assert sorted(p.name for p in gone) == ["b" * 16, "c" * 16 + ".tmp"]
    assert uml.rootfs_path(keep).is_dir()


def test_unavailable_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uml_kernel, "CACHE", tmp_path)
    monkeypatch.setattr(uml.os, "geteuid", lambda: 0)
    assert "ipsec-interop setup" in (uml.UmlRuntime().unavailable() or "")


def test_exported_trees_name_their_image_without_a_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    tree = tmp_path / ("d" * 16)
    tree.mkdir()
    (tree / uml.MARKER).write_text(json.dumps({"image_id": "sha256:" + "d" * 64, "name": "libreswan-5.2", "version": "5.2-2.2",
                                               "peer": "libreswan", "release": "trixie", "hash": "h", "kernel": "6.1.176"}))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / uml.MARKER).write_text("{}")
    monkeypatch.setattr(uml, "ROOTFS_CACHE", tmp_path)

    def no_daemon(name: str) -> None:
        raise LabUnavailable("no Docker daemon answers (test): run `ipsec-interop setup`")

    monkeypatch.setattr(uml.images, "find_image", no_daemon)
    assert [i.name for i in uml.exported_images()] == ["libreswan-5.2"]
    assert uml.find_exported("libreswan-5.2").version == "5.2-2.2"
    assert uml.find_exported("ipsec-interop/libreswan:trixie").name == "libreswan-5.2"
    assert uml.find_exported("libreswan").name == "libreswan-5.2"
    with pytest.raises(LabUnavailable, match="no Docker daemon"):
        uml.find_exported("strongswan-5.9")
