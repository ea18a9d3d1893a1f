"""The neutral Connection: loading from dicts/JSON, defaults, and ConfigError naming the key for every bad field."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.peers.connection import Connection, Identity, connection_from_dict, load_connection, mirrored

BASE = {"name": "c1", "local_addr": "198.18.0.3", "remote_addr": "198.18.0.4", "auth": {"psk": "secret-0123456789"}}
FULL = {
    **BASE, "local_id": {"type": "fqdn", "value": "left.example"}, "remote_id": "right@example.org",
    "ike_proposals": ["aes256-sha256-modp2048", "aes128gcm16-prfsha256-ecp256"], "child_proposals": "aes128-sha256-modp2048",
    "mode": "tunnel", "protocol": "esp", "local_ts": ["198.18.10.0/24"], "remote_ts": "198.18.11.0/24",
    "lifetimes": {"ike_rekey_time": 3600, "child_rekey_time": 600, "child_life_time": 700, "child_life_bytes": 10_000_000,
                  "child_life_packets": 100_000},
    "rekey": True, "dpd": {"delay": 10, "action": "restart"}, "encap": "force", "fragmentation": "no", "replay_window": 64,
    "role": "initiator", "child_name": "c1-child"}


def test_defaults() -> None:
    c = connection_from_dict(BASE)
    assert c.mode == "transport" and c.protocol == "esp" and c.role == "responder" and c.rekey
    assert c.local_selectors() == ("198.18.0.3/32",) and c.remote_selectors() == ("198.18.0.4/32",)
    assert c.child == "c1" and c.auth.method == "psk"


def test_every_field_round_trips() -> None:
    c = connection_from_dict(FULL)
    assert c.local_id == Identity("fqdn", "left.example") and c.remote_id == Identity("email", "right@example.org")
    assert c.child_proposals == ("aes128-sha256-modp2048",) and c.remote_ts == ("198.18.11.0/24",)
    assert c.lifetimes.child_life_packets == 100_000 and c.dpd.action == "restart" and c.replay_window == 64
    assert connection_from_dict(c.to_dict()) == c


def test_ipv6_and_ah_default_proposal() -> None:
    c = connection_from_dict({**BASE, "local_addr": "2001:db8::3", "remote_addr": "2001:db8::4", "protocol": "ah"})
    assert c.child_proposals == ("sha256",) and c.local_selectors() == ("2001:db8::3/128",)


def test_mirrored_swaps_the_ends() -> None:
    c = connection_from_dict(FULL)
    m = mirrored(c, role="responder")
    assert (m.local_addr, m.remote_addr, m.local_id, m.remote_id) == (c.remote_addr, c.local_addr, c.remote_id, c.local_id)
    assert (m.local_ts, m.remote_ts, m.role) == (c.remote_ts, c.local_ts, "responder")


BAD = [
    ("connection", []),
    ("name", {k: v for k, v in BASE.items() if k != "name"}),
    ("name", {**BASE, "name": "has space"}),
    ("colour", {**BASE, "colour": "blue"}),
    ("local_addr", {**BASE, "local_addr": "not-an-ip"}),
    ("remote_addr", {**BASE, "remote_addr": "2001:db8::4"}),
    ("auth", {**BASE, "auth": "psk"}),
    ("auth.psk", {**BASE, "auth": {"method": "psk"}}),
    ("auth.method", {**BASE, "auth": {"method": "eap"}}),
    ("auth.cert_pem", {**BASE, "auth": {"method": "pubkey", "key_pem": "x", "ca_pem": "y"}}),
    ("auth.token", {**BASE, "auth": {"psk": "x", "token": 1}}),
    ("auth.chain_pem", {**BASE, "auth": {"method": "pubkey", "cert_pem": "-----BEGIN X", "key_pem": "-----BEGIN X",
                                         "ca_pem": "-----BEGIN X", "chain_pem": "-----BEGIN PRIVATE KEY-----"}}),
    ("auth.chain_pem", {**BASE, "auth": {"psk": "x", "chain_pem": "-----BEGIN CERTIFICATE-----\n"}}),
    ("local_id.type", {**BASE, "local_id": {"type": "dns", "value": "x"}}),
    ("local_id.value", {**BASE, "local_id": {"type": "fqdn", "value": ""}}),
    ("remote_id.type", {**BASE, "remote_id": {"type": "ipv6", "value": "198.18.0.4"}}),
    ("ike_proposals[1]", {**BASE, "ike_proposals": ["aes128-sha256-ecp256", "aes128-sha256"]}),
    ("ike_proposals", {**BASE, "ike_proposals": []}),
    ("child_proposals[0]", {**BASE, "child_proposals": ["aes128-bogus"]}),
    ("child_proposals[0]", {**BASE, "protocol": "ah", "child_proposals": ["aes128-sha256"]}),
    ("mode", {**BASE, "mode": "beet"}),
    ("protocol", {**BASE, "protocol": "ipcomp"}),
    ("role", {**BASE, "role": "both"}),
    ("encap", {**BASE, "encap": "yes"}),
    ("fragmentation", {**BASE, "fragmentation": "maybe"}),
    ("childless", {**BASE, "childless": "no"}),
    ("local_ts[0]", {**BASE, "local_ts": ["198.18.0.3/16"]}),
    ("local_ts", {**BASE, "local_ts": ["198.18.9.0/24"]}),
    ("remote_ts", {**BASE, "remote_ts": 5}),
    ("lifetimes.ike_rekey_time", {**BASE, "lifetimes": {"ike_rekey_time": "1h"}}),
    ("lifetimes.child_rekey_time", {**BASE, "lifetimes": {"child_rekey_time": -1}}),
    ("lifetimes.ike_life", {**BASE, "lifetimes": {"ike_life": 1}}),
    ("rekey", {**BASE, "rekey": "no"}),
    ("dpd.action", {**BASE, "dpd": {"delay": 5, "action": "hold"}}),
    ("dpd.delay", {**BASE, "dpd": {"delay": True}}),
    ("replay_window", {**BASE, "replay_window": 5000}),
    ("replay_window", {**BASE, "replay_window": "32"}),
]


@pytest.mark.parametrize("key,data", BAD, ids=[f"{k}-{i}" for i, (k, _) in enumerate(BAD)])
def test_bad_input_names_the_key(key: str, data: object) -> None:
    with pytest.raises(ConfigError) as e:
        connection_from_dict(data, "conn.json")
    assert str(e.value).startswith(f"conn.json: {key}:"), str(e.value)


def test_load_connection_file(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_text(json.dumps(FULL))
    assert isinstance(load_connection(p), Connection)
    p.write_text("{nope")
    with pytest.raises(ConfigError, match=r"c\.json: not JSON: line 1"):
        load_connection(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load_connection(tmp_path / "missing.json")


def test_chain_pem_splits_into_certificates() -> None:
    from harness.peers.connection import pem_certificates

    one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    two = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"
    assert pem_certificates(one + "\n" + two) == [one, two] and pem_certificates("") == []
