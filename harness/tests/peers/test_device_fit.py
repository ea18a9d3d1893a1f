"""Which cases an external device runs as its profile declares it, the profile key a skip names, and its hooks' output."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import CannotReconfigure
from harness.peers.connection import Identity, connection_from_dict, mirrored
from harness.peers.device_control import ControlError, parse_swanctl, run_hook
from harness.peers.external import ExternalAdapter
from harness.runtime.profile import load_profile

PROFILE = """
version = "6.0.1"
[address]
ipv4 = "198.18.200.3"
[identity]
local = "gw.example.net"
remote = "tester@example.net"
[credentials]
psk = "device psk"
[proposals]
ike = ["aes128gcm16-prfsha256-ecp256"]
esp = ["aes128gcm16", "aes256-sha256"]
[features]
modes = ["transport"]
"""
CASE_PSK = "case psk"


def _adapter(tmp_path: Path, extra: str = "") -> ExternalAdapter:
    p = tmp_path / "gw.toml"
    p.write_text(PROFILE + extra)
    return ExternalAdapter(load_profile(p))


def _case(**fields):  # noqa: ANN003, ANN202
    """(builtin initiator's connection, the device's mirror) as a case would declare them."""
    d = {"name": "case", "local_addr": "198.18.0.1", "remote_addr": "198.18.200.3", "auth": {"psk": CASE_PSK}, **fields}
    c = connection_from_dict(d)
    return c, mirrored(c)


def test_a_default_case_runs_with_the_devices_identities_and_psk(tmp_path: Path) -> None:
    a = _adapter(tmp_path)
    conn, dev = _case()
    out = a.fit(dev, conn, device_initiates=False)
    assert out.auth.psk == "device psk" and out.local_id == Identity("email", "tester@example.net")
    assert out.remote_id == Identity("fqdn", "gw.example.net")
    a.load(dev)  # accepted: it is the device as declared
    a.unload("case")


@pytest.mark.parametrize("fields, key", [
    ({"mode": "tunnel"}, "features.modes"),
    ({"protocol": "ah", "child_proposals": ["sha256"]}, "proposals.ah"),
    ({"child_proposals": ["aes128-sha1"]}, "proposals.esp"),
    ({"ike_proposals": ["aes256-sha384-ecp384"]}, "proposals.ike"),
    ({"encap": "force"}, "features.natt"),
    ({"fragmentation": "force"}, "features.fragmentation"),
    ({"replay_window": 0}, "features.replay_window"),
    ({"lifetimes": {"child_rekey_time": 30}}, "features.lifetimes.child_rekey_time"),
    ({"local_id": "someone.example.net"}, "identity.remote"),
    ({"local_ts": ["198.18.0.0/24"]}, "features.remote_ts"),
    ({"child_proposals": ["aes128gcm16-esn"]}, "proposals.esp"),
])
def test_what_the_profile_does_not_declare_is_refused_naming_the_key(tmp_path: Path, fields: dict, key: str) -> None:
    conn, dev = _case(**fields)
    with pytest.raises(CannotReconfigure) as e:
        _adapter(tmp_path).fit(dev, conn, device_initiates=False)
    assert str(e.value).startswith(f"profile {tmp_path / 'gw.toml'}: {key}:")


def test_a_refusal_the_profile_also_refuses_runs(tmp_path: Path) -> None:
    conn, dev = _case(child_proposals=["aes128-sha1"])  # offered by the tester; the case's device lacks it too
    dev = dev.__class__(**{**dev.__dict__, "child_proposals": ("aes128gcm16",)})
    _adapter(tmp_path).fit(dev, conn, device_initiates=False)


def test_a_different_psk_on_each_end_cannot_be_made(tmp_path: Path) -> None:
    conn, dev = _case()
    dev = dev.__class__(**{**dev.__dict__, "auth": dev.auth.__class__("psk", psk="other")})
    with pytest.raises(CannotReconfigure, match="credentials.psk"):
        _adapter(tmp_path).fit(dev, conn, device_initiates=False)


def test_the_device_initiates_only_if_declared_and_commanded(tmp_path: Path) -> None:
    conn, dev = _case()
    with pytest.raises(CannotReconfigure, match="features.initiators"):
        _adapter(tmp_path).fit(conn, dev, device_initiates=True)
    a = _adapter(tmp_path, 'initiators = ["tester", "device"]\n')
    with pytest.raises(CannotReconfigure, match="control.initiate"):
        a.fit(conn, dev, device_initiates=True)


def test_a_device_without_hooks_is_not_read(tmp_path: Path) -> None:
    a = _adapter(tmp_path)
    assert not a.reports_state
    with pytest.raises(CannotReconfigure, match="control.list_sas is not set"):
        a.list_sas()
    with pytest.raises(CannotReconfigure, match="control.initiate is not set"):
        a.initiate("case")


SWANCTL = """\
lab: #3, ESTABLISHED, IKEv2, 8a4c2e1f0b9d3a77_i 1d2c3b4a59687706_r*
  local  'gw.example.net' @ 198.18.200.3[500]
  remote 'tester@example.net' @ 198.18.0.1[500]
  AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256
  established 2s ago, rekeying in 13831s
  lab: #2, reqid 1, INSTALLED, TRANSPORT, ESP:AES_GCM_16-128
    installed 2s ago, rekeying in 3201s, expires in 3958s
    in  c9a1b2c3,    252 bytes,     3 packets,     0s ago
    out c0d1e2f3,    336 bytes,     4 packets,     0s ago
    local  198.18.200.3/32
    remote 198.18.0.1/32
garbage: #x, \x00\x01 ESTABLISHED
  lab: #9, reqid 1, INSTALLED, TUNNEL, ESP:AES_CBC-128
"""


def test_swanctl_output_is_read_and_the_rest_ignored() -> None:
    [ike] = parse_swanctl(SWANCTL, "case")
    assert (ike.name, ike.state, ike.spi_i, ike.spi_r, ike.initiator) == ("case", "ESTABLISHED", 0x8a4c2e1f0b9d3a77,
                                                                           0x1d2c3b4a59687706, False)
    assert (ike.local_id, ike.local_addr, ike.remote_addr) == ("gw.example.net", "198.18.200.3", "198.18.0.1")
    [c] = ike.children  # the half-read Child SA after the garbage is dropped
    assert (c.protocol, c.mode, c.spi_in, c.spi_out, c.packets_in, c.packets_out) == ("ESP", "transport", 0xc9a1b2c3,
                                                                                      0xc0d1e2f3, 3, 4)
    assert (c.local_ts, c.remote_ts) == (["198.18.200.3/32"], ["198.18.0.1/32"])


@pytest.mark.parametrize("text", ["", "\x00" * 100000, "lab: #1, ESTABLISHED, IKEv2, zz_i zz_r\n" * 1000,
                                  ("x: #1, ESTABLISHED, IKEv2, 0000000000000001_i* 0000000000000002_r\n" * 400)])
def test_untrusted_output_never_raises_and_is_bounded(text: str) -> None:
    assert len(parse_swanctl(text, "case")) <= 256


def test_a_failing_or_silent_hook_is_a_control_error(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="control.list_sas: exit status 3"):
        run_hook(["sh", "-c", "echo no >&2; exit 3"], 5, "list_sas")
    with pytest.raises(ControlError, match="no answer within 1 s"):
        run_hook(["sleep", "5"], 1, "initiate")
    with pytest.raises(ControlError, match="cannot run"):
        run_hook([str(tmp_path / "absent")], 1, "terminate")
    assert len(run_hook(["head", "-c", "200000", "/dev/zero"], 5, "list_sas")) == 65536
