"""Image build inputs: content hash, mirror discovery, the images file, labels, the cache decision."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import ConfigError, LabError, LabUnavailable
from harness.runtime import images


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    peer, common = tmp_path / "peer", tmp_path / "common"
    (peer / "templates").mkdir(parents=True)
    common.mkdir()
    (peer / "Dockerfile").write_text("FROM x\n")
    (peer / "templates" / "a.conf").write_text("a\n")
    (common / "agent").write_text("#!/bin/sh\n")
    return peer, common


def test_hash_is_stable_and_follows_the_inputs(tmp_path: Path) -> None:
    peer, common = _tree(tmp_path)
    h = images.content_hash(peer, common, "bookworm", "sha256:1")
    assert h == images.content_hash(peer, common, "bookworm", "sha256:1")
    assert h != images.content_hash(peer, common, "trixie", "sha256:1")
    assert h != images.content_hash(peer, common, "bookworm", "sha256:2")
    (common / "agent").write_text("#!/bin/sh\necho\n")
    h2 = images.content_hash(peer, common, "bookworm", "sha256:1")
    assert h2 != h
    (peer / "Dockerfile").chmod(0o755)
    assert images.content_hash(peer, common, "bookworm", "sha256:1") != h2


def test_templates_do_not_trigger_a_rebuild(tmp_path: Path) -> None:
    peer, common = _tree(tmp_path)
    h = images.content_hash(peer, common, "bookworm", "b")
    (peer / "templates" / "a.conf").write_text("changed\n")
    (peer / "templates" / "new.conf").write_text("new\n")
    assert images.content_hash(peer, common, "bookworm", "b") == h
    (peer / "new-file").write_text("x")
    assert images.content_hash(peer, common, "bookworm", "b") != h


def test_host_mirror_reads_deb822_and_one_line_sources(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text("Types: deb\n# comment\nURIs: http://mirror.example/debian-security\n\n"
                                      "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n")
    assert images.host_mirror((tmp_path / "none", d)) == "http://mirror.example/debian"
    one = tmp_path / "sources.list"
    one.write_text("# deb http://old.example/debian bookworm main\ndeb [arch=amd64] http://one.example/debian bookworm main\n")
    assert images.host_mirror((one,)) == "http://one.example/debian"
    assert images.host_mirror((tmp_path / "missing",)) == images.DEFAULT_MIRROR


def test_sources_list_names_updates_and_security() -> None:
    text = images.sources_list("http://m.example/debian", "trixie")
    assert text.splitlines() == ["deb http://m.example/debian trixie main", "deb http://m.example/debian trixie-updates main",
                                 "deb http://m.example/debian-security trixie-security main"]


def test_the_project_builds_two_releases_of_each_peer() -> None:
    defs = images.image_defs()
    assert {(d.peer, d.release) for d in defs} == {(p, r) for p in ("strongswan", "libreswan") for r in ("bookworm", "trixie")}
    for d in defs:
        text = (d.folder / "Dockerfile").read_text()
        assert "ARG BASE" in text and "ARG RELEASE" in text and "ENTRYPOINT" in text


@pytest.mark.parametrize("body, key", [('{"images": [{"peer": "x", "release": "y"}]}', "package"), ("{", "")])
def test_images_file_errors_name_file_and_key(tmp_path: Path, body: str, key: str) -> None:
    f = tmp_path / "images.json"
    f.write_text(body)
    with pytest.raises(ConfigError) as e:
        images.image_defs(f)
    assert str(f) in str(e.value) and key in str(e.value)


LABELS = {"ipsec-interop.name": "strongswan-5.9", "ipsec-interop.peer": "strongswan", "ipsec-interop.release": "bookworm",
          "ipsec-interop.version": "5.9.8-5+deb12u6", "ipsec-interop.hash": "abc"}


def test_image_info_from_labels_and_missing_label() -> None:
    info = images.ImageInfo.from_labels("sha256:0123", LABELS)
    assert (info.name, info.version, info.tag) == ("strongswan-5.9", "5.9.8-5+deb12u6", "ipsec-interop/strongswan-5.9")
    partial = dict(LABELS)
    del partial["ipsec-interop.version"]
    with pytest.raises(LabError, match="ipsec-interop.version"):
        images.ImageInfo.from_labels("sha256:0123", partial)


class _Img:
    def __init__(self, id_: str, labels: dict[str, str]) -> None:
        self.id, self.labels = id_, labels


class _Images:
    def __init__(self, by_ref: dict[str, _Img]) -> None:
        self.by_ref = by_ref

    def get(self, ref: str) -> _Img:
        from docker.errors import ImageNotFound

        if ref not in self.by_ref:
            raise ImageNotFound(ref)
        return self.by_ref[ref]

    def list(self, filters: dict[str, str]) -> list[_Img]:
        return list({id(i): i for i in self.by_ref.values()}.values())


class _Client:
    def __init__(self, by_ref: dict[str, _Img]) -> None:
        self.images = _Images(by_ref)


def test_cache_hit_only_on_the_same_hash() -> None:
    d = images.ImageDef("strongswan", "bookworm", "strongswan-charon")
    client = _Client({d.tag: _Img("sha256:1", LABELS)})
    assert images.cached(client, d, "abc") is not None
    assert images.cached(client, d, "other") is None
    assert images.cached(_Client({}), d, "abc") is None


def test_find_image_by_name_family_and_error() -> None:
    old = dict(LABELS)
    new = dict(LABELS, **{"ipsec-interop.name": "strongswan-6.0", "ipsec-interop.release": "trixie"})
    lib = dict(LABELS, **{"ipsec-interop.name": "libreswan-4.10", "ipsec-interop.peer": "libreswan"})
    client = _Client({"a": _Img("sha256:a", old), "b": _Img("sha256:b", new), "c": _Img("sha256:c", lib)})
    assert images.find_image("strongswan-5.9", client).image_id == "sha256:a"
    assert images.find_image("strongswan", client).name == "strongswan-6.0"
    assert images.find_image("libreswan", client).name == "libreswan-4.10"
    with pytest.raises(LabUnavailable, match="libreswan-4.10, strongswan-5.9, strongswan-6.0"):
        images.find_image("openswan", client)


def test_peer_info_script_names_the_peer_from_its_version(tmp_path: Path) -> None:
    import subprocess

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "dpkg-query").write_text("#!/bin/sh\nprintf '1:4.10-2+deb12u1'\n")
    (fake / "dpkg-query").chmod(0o755)
    script = images.PEERS_DIR / "common" / "peer-info"
    env = {"PATH": f"{fake}:/usr/bin:/bin"}
    out = subprocess.run(["sh", str(script), "libreswan", "libreswan", "bookworm"], capture_output=True, text=True, env=env, check=True)
    info = json.loads(out.stdout)
    assert (info["name"], info["upstream"], info["version"]) == ("libreswan-4.10", "4.10", "1:4.10-2+deb12u1")
