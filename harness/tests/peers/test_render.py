"""Rendering a Connection into each implementation's native configuration: golden files plus one check per field.

Golden files (golden/*) are the exact output; regenerate them after an intended change with
IPSI_UPDATE_GOLDEN=1 python3 -m pytest harness/tests/peers/test_render.py and review the diff.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization as ser

from harness.errors import ConfigError, UnsupportedFeature, UnsupportedProposal
from harness.peers.connection import Dpd, connection_from_dict
from harness.ike.certs import TestPki
from harness.peers.libreswan import ipsec_conf, ipsec_secrets, signature_policy
from harness.peers.strongswan import conn_message, shared_message, strongswan_conf, swanctl_conf
from harness.peers.templates import render

GOLDEN = Path(__file__).parent / "golden"
BASE = {"name": "p2p", "local_addr": "198.18.0.3", "remote_addr": "198.18.0.4", "auth": {"psk": "ipsec-interop-psk-0123456789"}}
CONNECTIONS = {
    "transport-psk": BASE,
    "tunnel-all-fields": {
        **BASE, "local_id": {"type": "fqdn", "value": "left.example"}, "remote_id": {"type": "email", "value": "right@example.org"},
        "ike_proposals": ["aes256-sha256-modp2048", "aes128gcm16-prfsha256-ecp256"], "child_proposals": ["aes128-sha256-modp2048"],
        "mode": "tunnel", "local_ts": ["198.18.10.0/24"], "remote_ts": ["198.18.11.0/24"],
        "lifetimes": {"ike_rekey_time": 3600, "child_rekey_time": 600, "child_life_time": 700, "child_life_bytes": 10000000,
                      "child_life_packets": 100000},
        "dpd": {"delay": 10, "action": "clear"}, "encap": "force", "fragmentation": "no", "replay_window": 64, "role": "initiator"},
    "ah-v6": {**BASE, "local_addr": "2001:db8::3", "remote_addr": "2001:db8::4", "protocol": "ah", "child_proposals": ["sha512", "sha256"],
              "rekey": False, "role": "trap"},
}
RENDERERS = {
    "strongswan5.load-conn.json": lambda c: json.dumps(conn_message(c, 5), indent=1, sort_keys=True) + "\n",
    "strongswan6.load-conn.json": lambda c: json.dumps(conn_message(c, 6), indent=1, sort_keys=True) + "\n",
    "strongswan.swanctl.conf": lambda c: swanctl_conf(conn_message(c, 5)) + "\n",
    "libreswan4.ipsec.conf": lambda c: ipsec_conf(c, 4),
    "libreswan5.ipsec.conf": lambda c: ipsec_conf(c, 5),
    "libreswan.ipsec.secrets": ipsec_secrets,
}


@pytest.mark.parametrize("renderer", sorted(RENDERERS))
@pytest.mark.parametrize("conn", sorted(CONNECTIONS))
def test_golden(conn: str, renderer: str) -> None:
    text = RENDERERS[renderer](connection_from_dict(CONNECTIONS[conn]))
    path = GOLDEN / f"{conn}.{renderer}"
    if os.environ.get("IPSI_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_strongswan_conf_golden() -> None:
    text = strongswan_conf("tcp://198.19.0.10:4502")
    path = GOLDEN / "strongswan.conf"
    if os.environ.get("IPSI_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()
    assert "socket = tcp://198.19.0.10:4502" in text and "load = no" in text
    assert "ike = 2" in text and "knl = 2" in text and "cfg = 2" in text and "enc = 1" in text
    with pytest.raises(ConfigError, match="vici socket"):
        strongswan_conf("198.19.0.10:4502")


def _ss(c: object) -> dict:
    return conn_message(c, 5)["p2p"]  # type: ignore[arg-type]


def _child(c: object) -> dict:
    return _ss(c)["children"]["p2p"]


BASIC = connection_from_dict(BASE)
# (field change, strongSwan check on the load-conn dict, Libreswan 4.x line(s) expected in ipsec.conf)
FIELDS = [
    ("addresses", {}, lambda m: m["local_addrs"] == ["198.18.0.3"] and m["remote_addrs"] == ["198.18.0.4"],
     ["left=198.18.0.3", "right=198.18.0.4"]),
    ("ids-fqdn", {"local_id": {"type": "fqdn", "value": "a.example"}, "remote_id": {"type": "fqdn", "value": "b.example"}},
     lambda m: m["local"]["id"] == "fqdn:a.example" and m["remote"]["id"] == "fqdn:b.example", ["leftid=@a.example", "rightid=@b.example"]),
    ("ids-ip", {}, lambda m: m["local"]["id"] == "198.18.0.3", ["leftid=198.18.0.3", "rightid=198.18.0.4"]),
    ("ids-dn", {"remote_id": {"type": "dn", "value": "CN=right, O=ipsi"}}, lambda m: m["remote"]["id"] == "CN=right, O=ipsi",
     ['rightid="CN=right, O=ipsi"']),
    ("psk", {}, lambda m: m["local"]["auth"] == "psk" and m["remote"]["auth"] == "psk", ["authby=secret"]),
    ("ike", {"ike_proposals": ["aes256-sha256-modp2048"]}, lambda m: m["proposals"] == ["aes256-sha256-modp2048"],
     ["ike=aes256-sha2_256-modp2048"]),
    ("esp", {"child_proposals": ["aes256gcm16", "aes128-sha256"]},
     lambda m: m["children"]["p2p"]["esp_proposals"] == ["aes256gcm16", "aes128-sha256"],
     ["phase2=esp", "esp=aes_gcm_c_256,aes128-sha2_256", "pfs=no"]),
    ("esp-pfs", {"child_proposals": ["aes128-sha256-ecp256"]}, lambda m: True, ["esp=aes128-sha2_256;dh19", "pfs=yes"]),
    ("ah", {"protocol": "ah", "child_proposals": ["sha256"]}, lambda m: m["children"]["p2p"]["ah_proposals"] == ["sha256"],
     ["phase2=ah", "ah=sha2_256"]),
    ("transport", {}, lambda m: m["children"]["p2p"]["mode"] == "transport", ["type=transport"]),
    ("tunnel", {"mode": "tunnel", "local_ts": ["198.18.10.0/24"], "remote_ts": ["198.18.11.0/24"]},
     lambda m: m["children"]["p2p"]["mode"] == "tunnel" and m["children"]["p2p"]["local_ts"] == ["198.18.10.0/24"]
     and m["children"]["p2p"]["remote_ts"] == ["198.18.11.0/24"],
     ["type=tunnel", "leftsubnet=198.18.10.0/24", "rightsubnet=198.18.11.0/24"]),
    ("lifetimes", {"lifetimes": {"ike_rekey_time": 3600, "child_rekey_time": 600, "child_life_time": 660}},
     lambda m: m["rekey_time"] == "3600s" and m["children"]["p2p"]["rekey_time"] == "600s" and m["children"]["p2p"]["life_time"] == "660s",
     ["rekeymargin=60s", "salifetime=660s", "ikelifetime=3660s"]),
    ("rand-time", {"lifetimes": {"child_rekey_time": 6, "child_life_time": 9, "child_rand_time": 3}},
     lambda m: m["children"]["p2p"]["rand_time"] == "3s", ["rekeymargin=3s", "rekeyfuzz=100%"]),
    ("no-rand-time", {"lifetimes": {"child_rekey_time": 6, "child_life_time": 9}},
     lambda m: "rand_time" not in m["children"]["p2p"], ["rekeyfuzz=0%"]),
    ("reauth", {"lifetimes": {"ike_reauth_time": 7200}}, lambda m: m["reauth_time"] == "7200s", ["ikelifetime=7200s", "reauth=yes"]),
    ("volume", {"lifetimes": {"child_rekey_bytes": 1000, "child_life_bytes": 2000, "child_rekey_packets": 10, "child_life_packets": 20}},
     lambda m: (m["children"]["p2p"]["rekey_bytes"], m["children"]["p2p"]["life_bytes"], m["children"]["p2p"]["rekey_packets"],
                m["children"]["p2p"]["life_packets"]) == (1000, 2000, 10, 20),
     ["ipsec-max-bytes=2000", "ipsec-max-packets=20"]),
    ("rekey-off", {"rekey": False}, lambda m: m["rekey_time"] == "0" and m["reauth_time"] == "0" and m["children"]["p2p"]["rekey_time"] == "0",
     ["rekey=no"]),
    ("dpd", {"dpd": {"delay": 30, "action": "clear"}}, lambda m: m["dpd_delay"] == "30s" and m["children"]["p2p"]["dpd_action"] == "clear",
     ["dpddelay=30s", "dpdaction=clear"]),
    ("dpd-restart", {"dpd": {"delay": 30, "action": "restart"}}, lambda m: m["children"]["p2p"]["dpd_action"] == "restart",
     ["dpdaction=restart"]),
    ("natt-force", {"encap": "force"}, lambda m: m["encap"] == "yes", ["encapsulation=yes"]),
    ("natt-auto", {}, lambda m: m["encap"] == "no", ["encapsulation=auto"]),
    ("fragmentation", {"fragmentation": "force"}, lambda m: m["fragmentation"] == "force", ["fragmentation=force"]),
    ("childless-allow", {}, lambda m: "childless" not in m, []),  # charon's default, and all pluto does
    ("replay-window", {"replay_window": 128}, lambda m: m["children"]["p2p"]["replay_window"] == 128, ["replay-window=128"]),
    ("role-initiator", {"role": "initiator"}, lambda m: m["children"]["p2p"]["start_action"] == "start", ["auto=start"]),
    ("role-responder", {}, lambda m: m["children"]["p2p"]["start_action"] == "none", ["auto=add"]),
    ("role-trap", {"role": "trap"}, lambda m: m["children"]["p2p"]["start_action"] == "trap", ["auto=route"]),
    ("esn", {"child_proposals": ["aes128gcm16-esn"]}, lambda m: m["children"]["p2p"]["esp_proposals"] == ["aes128gcm16-esn"], ["esn=yes"]),
    ("updown-off", {}, lambda m: True, ["leftupdown=%disabled"]),
    # RFC 7296 s2.23.1: charon substitutes a transport-mode TS itself; pluto must be told the address behind the NAT
    ("transport-behind-nat", {"remote_behind_nat": "198.18.0.9"},
     lambda m: m["children"]["p2p"]["remote_ts"] == ["198.18.0.4/32"], ["type=transport", "rightsubnet=198.18.0.9/32"]),
]


@pytest.mark.parametrize("name,change,ss_check,lsw_lines", FIELDS, ids=[f[0] for f in FIELDS])
def test_each_field_reaches_both_configs(name: str, change: dict, ss_check, lsw_lines: list[str]) -> None:  # type: ignore[no-untyped-def]
    c = connection_from_dict({**BASE, **change})
    assert ss_check(_ss(c))
    lines = {line.strip() for line in ipsec_conf(c, 4).splitlines()}
    for want in lsw_lines:
        assert want in lines, (want, sorted(lines))


def test_version_differences() -> None:
    c = replace(BASIC, role="trap", dpd=Dpd(10, "restart"))
    assert "auto=ondemand" in ipsec_conf(replace(c, dpd=Dpd(10, "clear")), 5) and "auto=route" in ipsec_conf(c, 4)
    assert "keyexchange=ikev2" in ipsec_conf(BASIC, 5) and "ikev2=insist" in ipsec_conf(BASIC, 4)
    assert conn_message(c, 6)["p2p"]["children"]["p2p"]["dpd_action"] == "start"
    with pytest.raises(UnsupportedFeature, match="dpd.action restart"):
        ipsec_conf(c, 5)


@pytest.fixture(scope="module")
def pki() -> TestPki:
    return TestPki()


def _pubkey(pki: TestPki, kind: str) -> dict:
    """BASE with certificate authentication by a fresh `kind` key ("rsa2048", "p256", "ed25519", ...) from the test CA."""
    cred = pki.issue(f"CN=left-{kind}", ["198.18.0.3"], kind)
    pem = cred.key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()).decode()  # type: ignore[attr-defined]
    return {**BASE, "auth": {"method": "pubkey", "cert_pem": cred.cert.public_bytes(ser.Encoding.PEM).decode(), "key_pem": pem,
                             "ca_pem": pki.ca_cert.public_bytes(ser.Encoding.PEM).decode()}}


def test_psk_and_certificates(pki: TestPki) -> None:
    assert shared_message(BASIC) == {"id": "ipsi-p2p", "type": "IKE", "data": "ipsec-interop-psk-0123456789",
                                     "owners": ["198.18.0.3", "198.18.0.4"]}
    assert ipsec_secrets(BASIC).splitlines()[-1] == '198.18.0.3 198.18.0.4 : PSK "ipsec-interop-psk-0123456789"'
    c = connection_from_dict(_pubkey(pki, "rsa2048"))
    m = _ss(c)
    assert m["local"] == {"auth": "pubkey", "id": "198.18.0.3", "certs": [c.auth.cert_pem]} and m["remote"]["cacerts"] == [c.auth.ca_pem]
    assert shared_message(c) is None
    conf = ipsec_conf(c, 4)
    assert "authby=rsasig" in conf and "leftcert=ipsi-local" in conf and "rightca=%same" in conf
    assert "PEM object" in swanctl_conf(conn_message(c, 5))


def test_certificate_chain_reaches_both_configs() -> None:
    """An intermediate (chain_pem): charon loads it as a CA certificate beside the root and sends it with ours;
    pluto sends it (sendca=all, default none) and asks the peer's chain for the root by name, not for our issuer."""
    root = TestPki(ca_kind="rsa2048", name="CN=render root,O=ipsec-interop", path_length=1)
    mid = root.intermediate("CN=render intermediate,O=ipsec-interop")
    cred = mid.issue("CN=left", ["198.18.0.3"])
    pem = cred.key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()).decode()  # type: ignore[attr-defined]
    c = connection_from_dict({**BASE, "auth": {
        "method": "pubkey", "cert_pem": cred.cert.public_bytes(ser.Encoding.PEM).decode(), "key_pem": pem,
        "ca_pem": root.ca_cert.public_bytes(ser.Encoding.PEM).decode(),
        "chain_pem": mid.ca_cert.public_bytes(ser.Encoding.PEM).decode()}})
    lines = {line.strip() for line in ipsec_conf(c, 5).splitlines()}
    assert {"sendca=all", 'rightca="O=ipsec-interop, CN=render root"', "leftcert=ipsi-local"} <= lines
    assert "rightca=%same" not in lines
    assert _ss(c)["remote"]["cacerts"] == [c.auth.ca_pem]


# Measured under UML (built-in stack both ways, Libreswan 4.10 and 5.2): authby=ecdsa for P-256 and P-384 certificates,
# authby=rsasig for RSA-2048; with authby=rsasig an ECDSA certificate fails ("peer authentication requires policy ECDSA")
@pytest.mark.parametrize("major", [4, 5])
@pytest.mark.parametrize("kind,authby", [("rsa2048", "rsasig"), ("rsa3072", "rsasig"), ("p256", "ecdsa"), ("p384", "ecdsa"),
                                         ("p521", "ecdsa")])
def test_certificate_key_picks_the_signature_policy(pki: TestPki, kind: str, authby: str, major: int) -> None:
    assert signature_policy(connection_from_dict(_pubkey(pki, kind))) == authby
    lines = {line.strip() for line in ipsec_conf(connection_from_dict(_pubkey(pki, kind)), major).splitlines()}
    assert f"authby={authby}" in lines and "leftcert=ipsi-local" in lines


@pytest.mark.parametrize("major", [4, 5])
@pytest.mark.parametrize("kind", ["rsa2048", "p256"])
def test_certificate_golden(pki: TestPki, kind: str, major: int) -> None:
    c = connection_from_dict(_pubkey(pki, kind))
    for name, text in ((f"cert-{kind}.libreswan{major}.ipsec.conf", ipsec_conf(c, major)),
                       ("cert.libreswan.ipsec.secrets", ipsec_secrets(c))):
        path = GOLDEN / name
        if os.environ.get("IPSI_UPDATE_GOLDEN"):
            path.write_text(text)
        assert text == path.read_text()


def test_certificate_keys_libreswan_cannot_use(pki: TestPki) -> None:
    with pytest.raises(UnsupportedFeature, match="with a Ed25519 key .*no EdDSA, RFC 8420"):
        signature_policy(connection_from_dict(_pubkey(pki, "ed25519")))
    bad = {**BASE, "auth": {**_pubkey(pki, "p256")["auth"], "cert_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}
    with pytest.raises(ConfigError, match="connection p2p: auth.cert_pem"):
        ipsec_conf(connection_from_dict(bad), 5)


UNSUPPORTED_LSW = [
    ({"local_ts": ["198.18.0.3/32", "198.18.0.0/24"]}, UnsupportedFeature, "2 selectors on one side"),
    ({"mode": "tunnel", "local_ts": ["198.18.0.0/24[udp/1000-2000]"]}, UnsupportedFeature, "a port range"),
    ({"fragmentation": "accept"}, UnsupportedFeature, "fragmentation"),
    ({"childless": "force"}, UnsupportedFeature, "childless force"),
    ({"childless": "never"}, UnsupportedFeature, "childless never"),
    ({"dpd": {"delay": 5, "action": "none"}}, UnsupportedFeature, "dpd.action none"),
    ({"lifetimes": {"ike_rekey_time": 10, "ike_reauth_time": 20}}, UnsupportedFeature, "ike_reauth_time"),
    ({"lifetimes": {"child_rekey_time": 10, "child_life_time": 10}}, ConfigError, "child_life_time"),
    ({"ike_proposals": ["aes128-sha256-prfsha512-ecp256"]}, UnsupportedProposal, "'sha256'"),
    ({"auth": {"psk": 'a"b'}}, UnsupportedFeature, "PSK"),
]


@pytest.mark.parametrize("change,error,match", UNSUPPORTED_LSW, ids=[e[2] for e in UNSUPPORTED_LSW])
def test_libreswan_refuses_what_it_cannot_express(change: dict, error: type, match: str) -> None:
    c = connection_from_dict({**BASE, **change})
    with pytest.raises(error, match=match):
        ipsec_conf(c, 4)
        ipsec_secrets(c)


def test_template_errors_name_template_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"strongswan.conf: no value for \$\{"):
        render("strongswan", "strongswan.conf", {})
    with pytest.raises(ConfigError, match="cannot read"):
        render("strongswan", "missing.conf", {})


# RFC 7427 schemes: swanctl's "ike:" constraints (swanctl.conf(5) local.auth), pluto's authby= words (ipsec.conf(5))
@pytest.mark.parametrize("kind,scheme,swanctl,pluto4,pluto5", [
    ("rsa2048", "legacy", "pubkey", "rsa-sha1", "rsa-sha1"),
    ("rsa2048", "pss-sha256", "ike:rsa/pss-sha256", "rsa-sha2", "rsa-sha2_256"),
    ("rsa2048", "pss-sha512", "ike:rsa/pss-sha512", "rsa-sha2_512", "rsa-sha2_512"),
    ("rsa2048", "pkcs1-sha384", "ike:rsa-sha384", None, None),
    ("p384", "ecdsa-sha384", "ike:ecdsa-sha384", "ecdsa", "ecdsa-sha2_384"),
    ("p256", "legacy", "pubkey", "ecdsa", "ecdsa"),
])
def test_signature_scheme_renders(pki: TestPki, kind: str, scheme: str, swanctl: str, pluto4: str | None,
                                  pluto5: str | None) -> None:
    d = _pubkey(pki, kind)
    c = connection_from_dict({**d, "auth": {**d["auth"], "signature": scheme}})
    m = _ss(c)
    assert m["local"]["auth"] == m["remote"]["auth"] == swanctl
    for major, authby in ((4, pluto4), (5, pluto5)):
        if authby is None:
            with pytest.raises(UnsupportedFeature, match="libreswan: RFC 7427 RSA with PKCS#1"):
                signature_policy(c, major)
        else:
            assert f"authby={authby}" in ipsec_conf(c, major).split()
    with pytest.raises(ConfigError, match="auth.signature: must be one of legacy"):
        connection_from_dict({**d, "auth": {**d["auth"], "signature": "rsa-sha1"}})


# ipsec.conf(5): 5.x leftsubnet= is a comma separated list of PREFIX[/PROTOCOL[/PORT]]; 4.x one prefix and leftprotoport=
@pytest.mark.parametrize("major,want", [
    (5, ["leftsubnet=198.18.0.3/32/udp/40001,198.18.0.9/32", "rightsubnet=198.18.0.4/32/icmp"]),
    (4, None),
])
def test_libreswan_selectors_with_protocol_and_port(major: int, want: list[str] | None) -> None:
    c = connection_from_dict({**BASE, "mode": "tunnel", "local_ts": ["198.18.0.3/32[udp/40001]", "198.18.0.9/32"],
                              "remote_ts": ["198.18.0.4/32[icmp]"]})
    if want is None:
        with pytest.raises(UnsupportedFeature, match="4.x: 2 selectors on one side"):
            ipsec_conf(c, major)
        one = replace(c, local_ts=c.local_ts[:1])
        lines = ipsec_conf(one, major).split()
        assert {"leftsubnet=198.18.0.3/32", "leftprotoport=udp/40001", "rightsubnet=198.18.0.4/32",
                "rightprotoport=icmp"} <= set(lines)
        return
    assert set(want) <= set(ipsec_conf(c, major).split())
    assert _ss(c)["children"]["p2p"]["local_ts"] == ["198.18.0.3/32[17/40001]", "198.18.0.9/32"]
    with pytest.raises(ConfigError, match=r"local_ts\[0\]: traffic selector 198.18.0.3/32\[udp/x\]"):
        connection_from_dict({**BASE, "mode": "tunnel", "local_ts": ["198.18.0.3/32[udp/x]"]})


@pytest.mark.parametrize("policy", ["never", "force"])
def test_childless_reaches_strongswan_and_the_builtin_end(policy: str) -> None:
    from harness.peers.builtin import ike_config
    c = connection_from_dict({**BASE, "childless": policy})
    assert _ss(c)["childless"] == policy
    assert ike_config(c).childless == policy


def test_remote_behind_nat_is_transport_only_and_not_mirrored() -> None:
    from harness.peers.connection import mirrored
    c = connection_from_dict({**BASE, "remote_behind_nat": "198.18.0.9"})
    assert mirrored(c).remote_behind_nat is None and connection_from_dict(c.to_dict()) == c
    tunnel = connection_from_dict({**BASE, "mode": "tunnel", "remote_behind_nat": "198.18.0.9"})
    assert not any(line.strip().startswith("rightsubnet=198.18.0.9") for line in ipsec_conf(tunnel, 5).splitlines())
    with pytest.raises(ConfigError, match="remote_behind_nat: must be of the same IP version"):
        connection_from_dict({**BASE, "remote_behind_nat": "2001:db8::9"})
