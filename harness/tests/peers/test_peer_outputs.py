"""Parsers of the peers' and the kernel's outputs, on outputs recorded from real daemons (data/recorded/, see README)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import LabError, ParseError
from harness.peers.base import ChildSaRecord, child_serial, join_kernel, sa_keys
from harness.peers.libreswan import (parse_pluto_log, parse_showstates, parse_status_algorithms, parse_trafficstatus,
                                     records, refusal_in_log, own_refusal_in_log)
from harness.peers.strongswan import parse_list_sas
from harness.peers.strongswan import refusal_in_log as charon_refusal_in_log
from harness.peers.xfrm import parse_xfrm_policy, parse_xfrm_stat, parse_xfrm_state

REC = Path(__file__).parent / "data" / "recorded"
SCENARIOS = sorted(p.name for p in REC.iterdir())
ADDR = {"left": "198.18.0.3", "right": "198.18.0.4"}


def _files(scenario: str, pattern: str) -> list[Path]:
    return sorted((REC / scenario).glob(pattern))


def _bytes(x: object) -> object:
    """Back to the wire form the vici package yields: every leaf value bytes."""
    if isinstance(x, dict):
        return {k: _bytes(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_bytes(v) for v in x]
    return str(x).encode()


def _strongswan(scenario: str):  # type: ignore[no-untyped-def]
    (path,) = _files(scenario, "*-vici-list-sas.json")
    side = path.name.split("-")[0]
    events = [_bytes(e) for e in json.loads(path.read_text())]
    return side, parse_list_sas(events), parse_xfrm_state((REC / scenario / path.name.replace("vici-list-sas.json", "ip-s-xfrm-state.txt")).read_text())


def _libreswan(scenario: str):  # type: ignore[no-untyped-def]
    (path,) = _files(scenario, "*-showstates.txt")
    side, prefix = path.name.split("-")[0], str(path).removesuffix("-showstates.txt")
    sas = records(Path(prefix + "-showstates.txt").read_text(), Path(prefix + "-trafficstatus.txt").read_text(),
                  Path(prefix + "-status.txt").read_text(), ADDR[side], Path(prefix + ".log").read_text())
    return side, sas, parse_xfrm_state(Path(prefix + "-ip-s-xfrm-state.txt").read_text())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_both_ends_agree_on_spis_and_the_kernel_has_them(scenario: str) -> None:
    mode, proto = scenario.split("-")[-2:]
    ss_side, ss, ss_states = _strongswan(scenario)
    lsw_side, lsw, lsw_states = _libreswan(scenario)
    (a,), (b,) = ss, lsw
    assert a.established and b.established and a.name == b.name == "p2p"
    (ca,), (cb,) = a.children, b.children
    assert (ca.spi_in, ca.spi_out) == (cb.spi_out, cb.spi_in)
    assert ca.protocol == cb.protocol == proto.upper() and ca.mode == cb.mode == mode
    assert a.local_addr == ADDR[ss_side] and a.remote_addr == ADDR[lsw_side] == b.local_addr
    assert a.initiator == (ss_side == "left") and b.initiator == (lsw_side == "left")
    assert b.remote_id == ADDR[ss_side] and a.remote_id == ADDR[lsw_side]
    assert ca.local_ts == cb.remote_ts == [ADDR[ss_side] + "/32"]
    for states, c in ((ss_states, ca), (lsw_states, cb)):
        assert {(s.proto, s.spi) for s in states} == {(proto, c.spi_in), (proto, c.spi_out)}
        join_kernel([c], states)
        assert c.packets_in == c.packets_out == 3 and c.bytes_in == c.bytes_out > 0  # the three pings
    assert ca.keys and ca.keys.get("integ_in" if proto == "ah" else "encr_in") == cb.keys.get("integ_out" if proto == "ah" else "encr_out")
    assert a.encr == b.encr == "AES_GCM_16_128" and a.ke == "ECP_256" and b.ke == "DH19"
    # each Child SA carries the number its daemon deletes it by (vici child-id / whack --deletestate)
    assert ca.serial == int(next(iter(json.loads(_files(scenario, "*-vici-list-sas.json")[0].read_text())[0].values()))
                            ["child-sas"].popitem()[1]["uniqueid"])
    assert cb.serial is not None and cb.serial != b.serial
    assert child_serial(lsw, "p2p", cb.spi_in, "libreswan") == cb.serial
    with pytest.raises(LabError, match="no Child SA receiving on SPI 0x00000001"):
        child_serial(ss, "p2p", 1, "strongSwan")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_xfrm_state_parses_every_field(scenario: str) -> None:
    for path in _files(scenario, "*-ip-s-xfrm-state.txt"):
        states = parse_xfrm_state(path.read_text())
        plain = parse_xfrm_state(Path(str(path).replace("ip-s-xfrm", "ip-xfrm")).read_text())
        assert len(states) == len(plain) == 2
        for s, p in zip(states, plain):
            assert (s.spi, s.src, s.dst, s.proto, s.mode) == (p.spi, p.src, p.dst, p.proto, p.mode)
            assert s.stats == {"replay-window": 0, "replay": 0, "failed": 0} and p.stats == {}
            assert s.current_packets == 3 and p.current_packets is None
            assert s.algorithms and s.algorithms[0].key and not s.extra, s.extra
            assert s.integrity_failed == 0 and s.replay_errors == 0 and s.replay_window_errors == 0
            assert "expire add" in s.lifetime_config and (s.mode == "tunnel" or s.selector.startswith("src "))
        inbound = [s for s in states if s.dst in path.name or s.replay.get("seq")]
        assert any(s.replay.get("seq") == 3 for s in states) and any(s.replay.get("oseq") == 3 for s in states)
        assert inbound
        keys = sa_keys(states)
        assert {k.spi for k in keys} == {s.spi for s in states}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_xfrm_policy_and_stat(scenario: str) -> None:
    mode = scenario.split("-")[-2]
    for path in _files(scenario, "*-ip-s-xfrm-policy.txt"):
        pols = parse_xfrm_policy(path.read_text())
        ipsec = [p for p in pols if p.templates]
        assert {p.dir for p in ipsec} >= {"in", "out"}
        assert all(t.get("mode") == mode for p in ipsec for t in p.templates)
    for path in _files(scenario, "*-xfrm_stat.txt"):
        stat = parse_xfrm_stat(path.read_text())
        assert stat["XfrmInNoStates"] >= 0 and "XfrmInStateProtoError" in stat


def test_whack_parsers_on_4_10_with_numeric_prefixes() -> None:
    d = REC / "ss59-lsw410-tunnel-esp"
    (st1, st2) = parse_showstates((d / "right-libreswan-4.10-showstates.txt").read_text())
    assert (st1.serial, st1.name, st1.parent) == (1, "ESTABLISHED_IKE_SA", None)
    assert (st2.serial, st2.name, st2.parent) == (2, "ESTABLISHED_CHILD_SA", 1)
    assert [p for p, _, _ in st2.spis] == ["esp", "esp", "tun", "tun"] and st2.traffic["ESPin"] == "252B"
    t = parse_trafficstatus((d / "right-libreswan-4.10-trafficstatus.txt").read_text())
    assert t[2]["type"] == "ESP" and t[2]["inBytes"] == "252" and t[2]["id"] == "198.18.0.3"
    algs = parse_status_algorithms((d / "right-libreswan-4.10-status.txt").read_text())
    assert algs["p2p"]["IKE"] == "AES_GCM_16_128-HMAC_SHA2_256-DH19" and algs["p2p"]["ESP"].startswith("AES_GCM_16_128-NONE")
    log = parse_pluto_log((d / "right-libreswan-4.10.log").read_text())
    assert log[1]["role"] == "responder" and log[2]["mode"] == "tunnel"


def test_parsers_reject_malformed_input_with_offsets() -> None:
    good = (REC / "ss59-lsw410-transport-esp" / "left-strongswan-5.9-ip-s-xfrm-state.txt").read_text()
    cases = [
        ("garbage\n" + good, 0), (good.replace("spi 0x", "spi 0xzz", 1), good.index("\tproto")),
        (good.replace("(160 bits)", "(128 bits)", 1), good.index("\taead")),
        (good.replace("replay-window 0 replay 0 failed 0", "replay-window x", 1), good.index("\t  replay-window 0 replay")),
        ("src 198.18.0.3\n", 0), ("src 198.18.0.3 dst 198.18.0.4\n", 0),
    ]
    for text, offset in cases:
        with pytest.raises(ParseError) as e:
            parse_xfrm_state(text)
        assert e.value.offset == offset and e.value.what == "ip xfrm state", (e.value, text[:80])
    with pytest.raises(ParseError, match="neither a state line"):
        parse_showstates('#1: "p2p" what is this\n')
    with pytest.raises(ParseError, match="before its state line"):
        parse_showstates('#2: "p2p" esp.01@198.18.0.3 esp.02@198.18.0.4 Traffic: ESPin=0B\n')
    with pytest.raises(ParseError, match="trafficstatus"):
        parse_trafficstatus("#2 nonsense\n")
    with pytest.raises(ParseError, match="xfrm_stat"):
        parse_xfrm_stat("XfrmInError x\n")
    with pytest.raises(ParseError, match="dir"):
        parse_xfrm_policy("src 198.18.0.3/32 dst 198.18.0.4/32\n\taction allow\n")
    with pytest.raises(LabError, match="unexpected form"):
        parse_list_sas([{b"p2p": {b"state": b"ESTABLISHED"}}])


def test_join_kernel_keeps_the_peers_own_counters() -> None:
    states = parse_xfrm_state((REC / "ss59-lsw410-transport-esp" / "left-strongswan-5.9-ip-s-xfrm-state.txt").read_text())
    c = ChildSaRecord("p2p", "ESP", "transport", states[1].spi, states[0].spi, bytes_in=7, raw={"bytes_from_peer": True})
    join_kernel([c], states)
    assert c.bytes_in == 7 and c.packets_in == 3 and set(c.keys) == {"encr_in", "encr_out"}


def test_replay_windows_in_both_kernel_formats() -> None:
    d = REC / "ss59-lsw410-transport-esp"
    ss = parse_xfrm_state((d / "left-strongswan-5.9-ip-s-xfrm-state.txt").read_text())
    lsw = parse_xfrm_state((d / "right-libreswan-4.10-ip-s-xfrm-state.txt").read_text())
    inbound = next(s for s in ss if s.dst == ADDR["left"])
    assert not inbound.replay_esn_format and inbound.window == 32 and inbound.replay == {"seq": 3, "oseq": 0, "bitmap": 7}
    lin = next(s for s in lsw if s.dst == ADDR["right"])
    assert lin.replay_esn_format and lin.window == 128 and lin.replay["bitmap_length"] == 4 and lin.replay["seq"] == 3
    assert lin.replay_bitmap == [0, 0, 0, 7] and not lin.esn


def test_pluto_log_with_certificate_authentication_and_pending_states() -> None:
    log = parse_pluto_log((REC.parent / "pluto-4.10-certificate.log").read_text())
    assert log[1] == {"conn": "p2p", "role": "initiator", "remote_id_type": "certificate", "remote_id": "198.18.0.3"}
    assert log[2]["parent"] == 1 and log[2]["local_ts"] == ["198.18.0.4/32"] and log[2]["remote_ts"] == ["198.18.0.3/32"]
    # the 'pending' line as Libreswan 4.10 printed it during IKE_AUTH (suites/interop, 2026-11-23); the state line is constructed
    states = parse_showstates('#1: "p2p":500 STATE_V2_PARENT_I2 (sent IKE_AUTH request); RETRANSMIT in 1s; idle;\n'
                              '#21: pending CHILD SA for "p2p"\n')
    assert [(s.serial, s.name) for s in states] == [(1, "PARENT_I2")]


def test_showstates_ipv6_spi_form() -> None:
    # Libreswan writes IPv6 SAs as proto:SPI@addr; the first two fields as 4.10 printed them in suites/interop (2026-11-23)
    (st,) = [s for s in parse_showstates(
        '#2: "p2p":500 STATE_V2_ESTABLISHED_CHILD_SA (established Child SA); newest; IKE SA #1; idle;\n'
        '#2: "p2p" esp:c7c4bed4@2001:db8::3 esp:893a6ffb@2001:db8::4 \n') if s.spis]
    assert st.spis == [("esp", 0xc7c4bed4, "2001:db8::3"), ("esp", 0x893a6ffb, "2001:db8::4")] and st.parent == 1


def test_esn_flag_glued_to_extra_flag() -> None:
    """iproute2 prints no space between 'esn' and 'extra_flag' (Libreswan 5.2's outbound ESN SA, measured)."""
    text = ("src 198.18.0.3 dst 198.18.0.2\n"
            "\tproto esp spi 0x4e6731d4(1315385812) reqid 16389(0x00004005) mode transport\n"
            "\treplay-window 0 seq 0x00000000 flag esnextra_flag dont-encap-dscp (0x10000000)\n"
            "\tauth-trunc hmac(sha1) 0x3a1bdfdd5514b2d93e17ff0052c80c9eac9ab80d (160 bits) 96\n"
            "\tenc cbc(aes) 0x356d9ce02176ff5e96fbb1f4feb43d44 (128 bits)\n")
    (st,) = parse_xfrm_state(text)
    assert st.esn and st.flags == ["esn", "dont-encap-dscp"]


@pytest.mark.parametrize("log,notify", [("pluto-5.2-refused-ike-sa-init.log", "NO_PROPOSAL_CHOSEN"),
                                        ("pluto-4.10-refused-ike-sa-init.log", "NO_PROPOSAL_CHOSEN"),
                                        ("pluto-4.10-refused-ike-auth.log", "AUTHENTICATION_FAILED")])
def test_the_responders_refusal_is_read_from_plutos_log(log: str, notify: str) -> None:
    text = (Path(__file__).parent / "data" / log).read_text()
    found = refusal_in_log(text, "case")
    assert found and found[0] == notify and f"{notify}" in found[1] and found[1].startswith("Dec")
    assert refusal_in_log(text, "other") is None
    assert refusal_in_log(text.split(notify)[0], "case") is None  # nothing before the refusal's own line


@pytest.mark.parametrize("log,state", [("pluto-4.10-rejects-responder-certificate.log", "STATE_V2_PARENT_I2"),
                                       ("pluto-5.2-rejects-responder-certificate.log", "IKE_AUTH_I")])
def test_the_initiators_own_refusal_is_read_from_plutos_log(log: str, state: str) -> None:
    """pluto, as initiator, rejecting the responder's certificate logs no notify (it sends none, RFC 7296 s2.21.2 MAY)."""
    text = (Path(__file__).parent / "data" / log).read_text()
    found = own_refusal_in_log(text, "case")
    assert found and "X509: certificate payload rejected" in found and found.endswith(state)
    assert refusal_in_log(text, "case") is None and own_refusal_in_log(text, "other") is None
    refused_by_peer = (Path(__file__).parent / "data" / "pluto-4.10-refused-ike-auth.log").read_text()
    assert refusal_in_log(refused_by_peer, "case") and own_refusal_in_log(refused_by_peer, "case") is None


@pytest.mark.parametrize("log", ["pluto-4.10-rejects-responder-signature.log", "pluto-5.2-rejects-responder-signature.log"])
def test_a_responder_signature_pluto_rejects_is_its_own_refusal(log: str) -> None:
    """A signature that does not verify: no fatal error line, but 'authentication failed' and the IKE SA deleted."""
    text = (Path(__file__).parent / "data" / log).read_text()
    found = own_refusal_in_log(text, "case")
    assert found and "authentication failed: using ECDSA" in found and "deleting" in found.splitlines()[-1]
    assert refusal_in_log(text, "case") is None and own_refusal_in_log(text, "other") is None
    assert own_refusal_in_log(text.split("deleting")[0], "case") is None


@pytest.mark.parametrize("log", ["pluto-4.10-rejects-tunnel-mode.log", "pluto-5.2-rejects-tunnel-mode.log"])
def test_the_initiators_own_child_sa_refusal_is_read_from_plutos_log(log: str) -> None:
    """pluto initiating in transport mode, answered in tunnel mode, deletes the Child SA (RFC 7296 s1.3.1)."""
    from harness.peers.libreswan import own_child_refusal_in_log

    text = (Path(__file__).parent / "data" / log).read_text()
    found = own_child_refusal_in_log(text, "case")
    assert found and ("Mode" in found or "rejected Child SA response" in found)
    assert own_child_refusal_in_log(text, "other") is None and refusal_in_log(text, "case") is None
    assert own_child_refusal_in_log((Path(__file__).parent / "data" / "pluto-4.10-refused-ike-auth.log").read_text(), "case") is None


def test_the_responders_refusal_is_read_from_charons_log() -> None:
    """charon as initiator logs the responder's error notify with its IKE SA's unique id; only the latest IKE SA counts."""
    text = (Path(__file__).parent / "data" / "charon-6.0-ts-unacceptable.log").read_text()
    assert charon_refusal_in_log(text, "case") == "TS_UNACCEPTABLE"
    assert charon_refusal_in_log(text, "other") is None
    later = text + "2026-12-05T22:10:40 14[IKE] <case|2> initiating IKE_SA case[2] to 198.18.0.4\n"
    assert charon_refusal_in_log(later, "case") is None  # the new IKE SA has not been refused (yet)


def test_sa_keys_skips_an_spi_allocated_without_keys() -> None:
    """A Child SA rekey in flight leaves an allocated SPI (XFRM_MSG_ALLOCSPI: a state without algorithms) in the
    kernel; it has no keys to write, and it must not stop the keys of the others (seen with charon mid-rekey)."""
    larval = ("src 198.18.0.2 dst 198.18.0.3\n\tproto esp spi 0xc2b7a1f0 reqid 0 mode transport\n"
              "\treplay-window 0 \n\tsel src 0.0.0.0/0 dst 0.0.0.0/0 \n")
    states = parse_xfrm_state(larval)
    assert len(states) == 1 and not states[0].algorithms and sa_keys(states) == []


def test_encr_null_is_printed_without_a_key() -> None:
    """iproute2 prints ENCR_NULL's empty key as nothing ("enc ecb(cipher_null) ", measured on every peer's kernel with
    null-sha256): the state parses, and its keys name ENCR_NULL with the integrity algorithm."""
    text = ("src 198.18.0.3 dst 198.18.0.2\n"
            "\tproto esp spi 0xc81b9b5e reqid 1 mode tunnel\n"
            "\treplay-window 0 flag af-unspec\n"
            "\tauth-trunc hmac(sha256) 0x" + "11" * 32 + " (256 bits) 128\n"
            "\tenc ecb(cipher_null) \n")
    (st,) = parse_xfrm_state(text)
    assert [(a.kind, a.name, a.key) for a in st.algorithms][1] == ("enc", "ecb(cipher_null)", b"")
    (keys,) = sa_keys([st])
    assert keys.encryption == "ENCR_NULL" and keys.integrity == "AUTH_HMAC_SHA2_256_128"
