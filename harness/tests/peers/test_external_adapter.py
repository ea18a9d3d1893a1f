"""The external device's adapter: the peer protocol, refusals naming the profile file, and the lab handing it out."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.errors import CannotReconfigure
from harness.lab import peering
from harness.peers import PeerAdapter, connection_from_dict
from harness.peers.external import ExternalAdapter
from harness.runtime.external import load_profile

PROFILE = """
name = "vendor-gw"
version = "7.2.1"
[address]
ipv4 = "198.18.0.3"
[identity]
local = "gw.example.net"
remote = "tester.example.net"
[credentials]
psk = "s3cret-psk"
[proposals]
ike = ["aes256-sha256-modp2048"]
esp = ["aes128gcm16"]
"""
CONN = connection_from_dict({"name": "p2p", "local_addr": "198.18.0.3", "remote_addr": "198.18.0.4", "auth": {"psk": "k" * 20}})


@pytest.fixture
def profile_path(tmp_path: Path) -> Path:
    path = tmp_path / "dev.toml"
    path.write_text(PROFILE)
    return path


@pytest.fixture
def adapter(profile_path: Path) -> ExternalAdapter:
    return ExternalAdapter(load_profile(profile_path))


def test_it_is_a_peer_adapter_reporting_the_profile(adapter: ExternalAdapter, profile_path: Path) -> None:
    assert isinstance(adapter, PeerAdapter)
    assert adapter.version() == "vendor-gw 7.2.1"
    assert "no log" in adapter.logs() and str(profile_path) in adapter.logs()
    adapter.start()
    adapter.stop()  # nothing was started, nothing is stopped


REFUSALS = [
    ("load", lambda a: a.load(CONN), "cannot load connection 'p2p' into an external device (the device is configured by its owner)"),
    ("unload", lambda a: a.unload("p2p"), "cannot unload connection 'p2p'"),
    ("initiate", lambda a: a.initiate("p2p"), "cannot make an external device initiate 'p2p'"),
    ("terminate", lambda a: a.terminate("p2p"), "cannot make an external device terminate 'p2p'"),
    ("rekey", lambda a: a.rekey("p2p", "ike"), "cannot make an external device rekey the ike SA of 'p2p'"),
    ("delete_child", lambda a: a.delete_child("p2p", 0xc0ffee01), "cannot make an external device delete the Child SA 0xc0ffee01 of 'p2p'"),
    ("list_sas", lambda a: a.list_sas(), "cannot list the SAs"),
    ("xfrm_state", lambda a: a.xfrm_state(), "cannot read the kernel SAs"),
    ("xfrm_policy", lambda a: a.xfrm_policy(), "cannot read the kernel policies"),
]


@pytest.mark.parametrize("call,message", [(r[1], r[2]) for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_what_needs_the_device_is_refused_naming_the_profile(adapter: ExternalAdapter, profile_path: Path, call,  # noqa: ANN001
                                                              message: str) -> None:
    with pytest.raises(CannotReconfigure) as e:
        call(adapter)
    assert str(e.value).startswith(f"profile {profile_path}: ") and message in str(e.value)


def test_start_peer_without_a_wire_is_unavailable_naming_the_key(profile_path: Path) -> None:
    lab = SimpleNamespace(topology=SimpleNamespace(name="direct"), run="00000000", worker=0, name="ipsi-00000000-0-direct-lab",
                          link_specs=lambda node: [])
    with pytest.raises(peering.Unavailable, match=r"dev.toml: wire: missing, so the device cannot reach the lab"):
        peering.start_peer(lab, "peer", "vendor-gw", "external", str(profile_path))  # type: ignore[arg-type]
