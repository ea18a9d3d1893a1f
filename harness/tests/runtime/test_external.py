"""External device profiles: parsing, typed errors naming the file and key, and refusal to reconfigure."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import CannotReconfigure, ConfigError
from harness.runtime import get_runtime
from harness.runtime.base import NodeSpec
from harness.runtime.external import load_profile

GOOD = """
name = "vendor-gw"
version = "7.2.1"
kernel = "VendorOS 7.2"
[address]
ipv4 = "198.18.0.3"
ipv6 = "2001:db8::3"
[identity]
local = "gw.example.net"
remote = "tester.example.net"
[credentials]
psk_file = "secret.txt"
[proposals]
ike = ["aes256-sha256-modp2048", "aes128gcm16-prfsha256-ecp256"]
esp = ["aes128gcm16"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "secret.txt").write_text("s3cret-psk\n")
    p = tmp_path / "gw.toml"
    p.write_text(text)
    return p


def test_a_good_profile(tmp_path: Path) -> None:
    p = load_profile(_write(tmp_path, GOOD))
    assert (p.name, p.version, p.kernel, p.ipv4, p.ipv6) == ("vendor-gw", "7.2.1", "VendorOS 7.2", "198.18.0.3", "2001:db8::3")
    assert (p.local_id, p.remote_id) == ("gw.example.net", "tester.example.net")
    assert p.credentials.psk == b"s3cret-psk"
    assert p.proposals == {"ike": ("aes256-sha256-modp2048", "aes128gcm16-prfsha256-ecp256"), "esp": ("aes128gcm16",), "ah": ()}


GOOD_ERRORS = [  # an edit of GOOD, and what the error must name besides the file
    (lambda t: t.replace('version = "7.2.1"\n', ""), "version: missing"),
    (lambda t: t.replace('"198.18.0.3"', '"192.0.2.3"'), "address.ipv4"),
    (lambda t: t.replace('"2001:db8::3"', '"fe80::1"'), "address.ipv6"),
    (lambda t: t.replace('"198.18.0.3"', '"not-an-ip"'), "address.ipv4"),
    (lambda t: t.replace('local = "gw.example.net"', "local = 5"), "identity.local: expected str"),
    (lambda t: t.replace('psk_file = "secret.txt"', 'psk_file = "nope.txt"'), "credentials.psk_file"),
    (lambda t: t.replace('psk_file = "secret.txt"', 'psk_file = "secret.txt"\npsk = "x"'), "exclusive"),
    (lambda t: t.replace('psk_file = "secret.txt"', 'psk = ""'), "credentials.psk: empty"),
    (lambda t: t.replace('esp = ["aes128gcm16"]', 'esq = ["x"]'), "proposals.esq"),
    (lambda t: t.replace('esp = ["aes128gcm16"]', 'esp = "aes128gcm16"'), "proposals.esp"),
    (lambda t: t.replace('ike = ["aes256-sha256-modp2048", "aes128gcm16-prfsha256-ecp256"]', ""), "proposals.ike"),
    (lambda t: t + "[[[", "not TOML"),
]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_profile(tmp_path / "absent.toml")


def test_the_device_refuses_reconfiguration(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    rt = get_runtime("external", profile=str(path))
    assert rt.unavailable() is None
    node = rt.start(NodeSpec("peer", "vendor-gw", "vendor"), "unused", [])
    assert (node.runtime, node.kernel, node.version) == ("external", "VendorOS 7.2", "7.2.1")
    with pytest.raises(CannotReconfigure, match=str(path)):
        node.exec(["ipsec", "reload"])
    with pytest.raises(CannotReconfigure):
        node.put_file("/etc/ipsec.conf", b"")
    with node:
        pass  # stop() is a no-op


def test_unavailable_without_or_with_a_bad_profile(tmp_path: Path) -> None:
    assert "--profile" in (get_runtime("external").unavailable() or "")
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 1\n")
    assert str(bad) in (get_runtime("external", profile=str(bad)).unavailable() or "")


FULL = GOOD + """
[features]
modes = ["transport", "tunnel"]
natt = true
esn = true
fragmentation = true
replay_window = 64
initiators = ["tester", "device"]
local_ts = ["198.18.0.3/32"]
remote_ts = ["198.18.0.0/15"]
[features.lifetimes]
child_rekey_time = 3600
[wire]
kind = "netns"
netns = "vendor"
bridge = "br0"
[control]
list_sas = ["ssh", "gw", "swanctl", "--list-sas"]
initiate = ["ssh", "gw", "swanctl", "--initiate", "--child", "lab"]
timeout = 20
"""


def test_a_full_profile_is_one_dataclass(tmp_path: Path) -> None:
    p = load_profile(_write(tmp_path, FULL))
    f = p.features
    assert (f.modes, f.natt, f.esn, f.fragmentation, f.replay_window, f.initiators) == (
        ("transport", "tunnel"), True, True, True, 64, ("tester", "device"))
    assert dict(f.lifetimes) == {"child_rekey_time": 3600} and f.remote_ts == ("198.18.0.0/15",)
    assert p.wire is not None and (p.wire.kind, p.wire.netns, p.wire.ifname, p.wire.bridge) == ("netns", "vendor", "lab0", "br0")
    assert p.control.list_sas[-1] == "--list-sas" and p.control.terminate == () and p.control.timeout == 20.0


def test_the_readmes_example_profile_loads(tmp_path: Path) -> None:
    """The full example in README.md is a valid profile (its files aside)."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    example = readme.split("## Validating a device: the profile", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    p = load_profile(_write(tmp_path, example))
    assert p.name == "vendor-gw" and p.wire is not None and p.control.list_sas


FULL_ERRORS = [  # an edit of FULL (the keys beyond GOOD), and what the error must name besides the file
    (lambda t: t.replace('modes = ["transport", "tunnel"]', 'modes = ["bent"]'), "features.modes"),
    (lambda t: t.replace("natt = true", 'natt = "yes"'), "features.natt: expected bool"),
    (lambda t: t.replace("replay_window = 64", "replay_window = -1"), "features.replay_window"),
    (lambda t: t.replace("replay_window = 64", "replay_window = true"), "features.replay_window: expected int"),
    (lambda t: t.replace("child_rekey_time = 3600", "child_rekey_secs = 3600"), "features.lifetimes.child_rekey_secs"),
    (lambda t: t.replace('initiators = ["tester", "device"]', 'initiators = ["nobody"]'), "features.initiators"),
    (lambda t: t.replace('remote_ts = ["198.18.0.0/15"]', 'remote_ts = ["everything"]'), "features.remote_ts"),
    (lambda t: t.replace("timeout = 20", "timeout = 0"), "control.timeout"),
    (lambda t: t.replace('list_sas = ["ssh"', 'list_sas = [1, "ssh"'), "control.list_sas"),
    (lambda t: t.replace("[control]", "[control]\nformat = \"json\""), "control.format"),
    (lambda t: t.replace('esp = ["aes128gcm16"]', 'esp = ["aes128gcm17"]'), "proposals.esp[0]"),
    (lambda t: t + "\ncolour = \"blue\"\n", "unknown key"),
]


@pytest.mark.parametrize("base, edit, key", [("good", *r) for r in GOOD_ERRORS] + [("full", *r) for r in FULL_ERRORS])
def test_errors_name_the_file_and_the_key(tmp_path: Path, base: str, edit, key: str) -> None:  # noqa: ANN001
    path = _write(tmp_path, edit(GOOD if base == "good" else FULL))
    with pytest.raises(ConfigError) as e:
        load_profile(path)
    assert str(path) in str(e.value) and key in str(e.value)
