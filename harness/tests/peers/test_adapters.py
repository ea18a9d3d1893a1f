"""Both adapters against a scripted node (no root, no daemon): the commands they issue and what they make of the answers.

The answers are the outputs recorded from the real daemons (data/recorded/); the node records every exec, spawn and file.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.errors import ConfigError, LabError, NotEstablished
from harness.lab.peering import Unavailable, make_adapter
from harness.peers import PeerAdapter, connection_from_dict, mirrored
from harness.peers.libreswan import ADDCONN, OUTPUT_SEPARATOR, WHACK, LibreswanAdapter
from harness.peers.strongswan import StrongswanAdapter
from harness.runtime.base import ExecResult

REC = Path(__file__).parent / "data" / "recorded"


class ScriptedNode:
    """A runtime node whose command outputs come from a table {argv tuple prefix: stdout}."""

    name = "ipsi-00000000-0-test"

    def __init__(self, answers: dict[tuple[str, ...], str], files: dict[str, bytes] | None = None) -> None:
        self.answers, self.files = answers, dict(files or {})
        self.failing: set[tuple[str, ...]] = {("test", "-e", "/var/lib/ipsec/nss/cert9.db")}  # a fresh node: no NSS db yet
        self.calls: list[tuple[str, ...]] = []
        self.spawned: list[tuple[tuple[str, ...], str]] = []

    def exec(self, argv: Sequence[str], timeout: float = 30, input: str | None = None) -> ExecResult:
        argv = tuple(argv)
        self.calls.append(argv)
        if argv[:2] == ("sh", "-c") and argv[2].startswith("cat > ") and input is not None:
            self.files[argv[2].split()[2]] = input.encode()  # what `cat > PATH` of the script writes
        if argv in self.failing:
            return ExecResult(1, "", "")
        if argv[:2] == ("sh", "-c") and OUTPUT_SEPARATOR in argv[2]:  # several commands, outputs separated
            script = argv[2].removeprefix("set -e; ")
            outs = [self.exec(tuple(cmd.split())).stdout for cmd in script.split(f"; echo '{OUTPUT_SEPARATOR}'; ")]
            return ExecResult(0, "".join(o + ("" if o.endswith("\n") or not o else "\n") + OUTPUT_SEPARATOR + "\n"
                                         for o in outs[:-1]) + outs[-1], "")
        for prefix, out in self.answers.items():
            if argv[:len(prefix)] == prefix:
                return ExecResult(0, out, "")
        return ExecResult(0, "", "")

    def spawn(self, argv: Sequence[str], log_path: str) -> int:
        self.spawned.append((tuple(argv), log_path))
        return 4242

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.files[path] = data

    def get_file(self, path: str) -> bytes:
        if path not in self.files:
            raise LabError(f"no {path}")
        return self.files[path]


def _lsw_node(scenario: str, side: str, version: str) -> ScriptedNode:
    p = REC / scenario / f"{side}-libreswan-{version}"
    return ScriptedNode({
        ("ipsec", "--version"): f"Libreswan {version}\n",
        (WHACK, "--showstates"): Path(f"{p}-showstates.txt").read_text(),
        (WHACK, "--trafficstatus"): Path(f"{p}-trafficstatus.txt").read_text(),
        (WHACK, "--status"): Path(f"{p}-status.txt").read_text(),
        ("ip", "-s", "xfrm", "state"): Path(f"{p}-ip-s-xfrm-state.txt").read_text(),
        ("ip", "-s", "xfrm", "policy"): Path(f"{p}-ip-s-xfrm-policy.txt").read_text(),
    }, {"/var/log/pluto.log": Path(f"{p}.log").read_bytes()})


CONN = connection_from_dict({"name": "p2p", "local_addr": "198.18.0.4", "remote_addr": "198.18.0.3", "auth": {"psk": "k" * 20}})


def test_libreswan_start_load_and_list() -> None:
    node = _lsw_node("ss59-lsw410-tunnel-esp", "right", "4.10")
    a = LibreswanAdapter(node)
    assert isinstance(a, PeerAdapter) and a.version() == "Libreswan 4.10" and a.major() == 4
    a.load(CONN)
    assert node.spawned == [(("ipsec", "pluto", "--config", "/etc/ipsec.conf", "--nofork", "--stderrlog", "--keep-alive", "2"),
                             "/var/log/pluto.stderr")]
    order = [c for c in node.calls if c[:2] == ("ipsec", "initnss") or c[0] in (WHACK, ADDCONN)]
    assert order[0][:2] == ("ipsec", "initnss") and (WHACK, "--listen") in order
    load = ("sh", "-c", f"cat > /etc/ipsec.conf && {ADDCONN} --config /etc/ipsec.conf p2p && {WHACK} --rereadsecrets")
    assert load in node.calls, "addconn, then the changed secrets reread, in one round trip"
    calls = len(node.calls)
    a.load(CONN)  # same secrets: no reread; the loaded connection is replaced
    assert node.calls[calls:][-1] == ("sh", "-c", f"cat > /etc/ipsec.conf && {{ {WHACK} --delete --name p2p || true; }} && "
                                                  f"{ADDCONN} --config /etc/ipsec.conf p2p")
    assert b"conn p2p" in node.files["/etc/ipsec.conf"] and b"PSK" in node.files["/etc/ipsec.secrets"]
    (sa,) = a.list_sas()
    (c,) = sa.children
    assert sa.initiator is False and sa.remote_addr == "198.18.0.3" and c.mode == "tunnel" and c.packets_in == 3
    assert c.keys["encr_in"] and len(a.sa_keys()) == 2
    a.rekey("p2p", "child")
    assert node.calls[-1] == (WHACK, "--asynchronous", "--rekey-ipsec", "--name", "p2p")
    a.stop()
    assert node.calls[-1] == ("kill", "4242")


def test_libreswan_5_words() -> None:
    node = _lsw_node("ss60-lsw52-transport-esp", "right", "5.2")
    a = LibreswanAdapter(node)
    a.load(CONN)
    assert b"keyexchange=ikev2" in node.files["/etc/ipsec.conf"]
    a.rekey("p2p", "child")
    assert node.calls[-1] == (WHACK, "--asynchronous", "--rekey-child", "--name", "p2p")
    a.rekey("p2p", "ike")
    assert node.calls[-1] == (WHACK, "--asynchronous", "--rekey-ike", "--name", "p2p")
    with pytest.raises(ConfigError):
        a.rekey("p2p", "both")


def test_libreswan_initiate_reads_state_not_exit_codes() -> None:
    node = _lsw_node("ss60-lsw52-transport-esp", "right", "5.2")
    node.answers[(WHACK, "--showstates")] = ""
    a = LibreswanAdapter(node)
    a.load(CONN)
    with pytest.raises(NotEstablished, match="no established IKE SA"):  # the peer's outcome: FAILED, not BROKEN
        a.initiate("p2p", timeout=0.3)


class FakeLab:
    """What make_adapter asks of a lab: a node's management address and a TCP connection inside the lab."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def node(self, name: str) -> "FakeLab":
        self.asked.append(("node", name))
        return self

    def address(self, segment: str) -> str:
        self.asked.append(("address", segment))
        return "198.19.0.10"


def test_make_adapter_picks_by_implementation() -> None:
    node, lab = ScriptedNode({}), FakeLab()
    assert isinstance(make_adapter("libreswan", node, lab, "peer"), LibreswanAdapter)  # type: ignore[arg-type]
    ss = make_adapter("strongswan", node, lab, "peer")  # type: ignore[arg-type]
    assert isinstance(ss, StrongswanAdapter) and ss.vici_socket == "tcp://198.19.0.10:4502"
    assert lab.asked == [("node", "peer"), ("address", "mgmt")]
    with pytest.raises(Unavailable, match="no adapter for peer implementation 'racoon'"):
        make_adapter("racoon", node, lab, "peer")  # type: ignore[arg-type]


def test_strongswan_start_writes_conf_and_reports_a_dead_vici() -> None:
    node = ScriptedNode({("test", "-e"): ""})

    def refuse():  # type: ignore[no-untyped-def]
        raise ConnectionRefusedError(111, "refused")

    a = StrongswanAdapter(node, "tcp://198.19.0.10:4502", refuse, start_timeout=0.3)
    assert isinstance(a, PeerAdapter)
    with pytest.raises(LabError, match="not answering"):
        a.start()
    assert node.spawned == [(("/usr/lib/ipsec/charon",), "/var/log/charon.stdout")]
    conf = node.files["/etc/strongswan.conf"].decode()
    assert "socket = tcp://198.19.0.10:4502" in conf and "path = /var/log/charon.log" in conf


def test_mirrored_connection_for_the_other_end() -> None:
    m = mirrored(CONN, role="initiator")
    assert (m.local_addr, m.remote_addr, m.role) == ("198.18.0.3", "198.18.0.4", "initiator")


def test_vici_socket_reads_delegates_and_stays_broken_after_an_interrupted_read() -> None:
    import socket

    from harness.peers.strongswan import ViciSocket

    with socket.create_server(("127.0.0.1", 0)) as server:
        client = ViciSocket(socket.create_connection(server.getsockname()), bound=0.5)
        peer, _ = server.accept()
        with peer:
            peer.sendall(b"\x00\x00\x00\x01x")
            client.settimeout(None)
            assert client.gettimeout() == 0.5  # vici's "block forever" is the bound
            assert client.recv(5) == b"\x00\x00\x00\x01x"
            client.sendall(b"y")
            assert peer.recv(1) == b"y"
            with pytest.raises(TimeoutError):
                client.recv(4)  # charon silent: the bound ends the read
            peer.sendall(b"z")
            with pytest.raises(TimeoutError):
                client.recv(1)  # out of step: never read again, not even what arrived later
            with pytest.raises(TimeoutError):
                client.sendall(b"unregister")
        client.close()


def _cert_conn(root, name: str) -> object:
    from cryptography.hazmat.primitives import serialization as ser

    cred = root.issue(f"CN={name}", ["198.18.0.4"], "p256")
    pem = cred.key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()).decode()
    return connection_from_dict({**CONN.to_dict(), "auth": {
        "method": "pubkey", "cert_pem": cred.cert.public_bytes(ser.Encoding.PEM).decode(), "key_pem": pem,
        "ca_pem": root.ca_cert.public_bytes(ser.Encoding.PEM).decode()}})


@pytest.mark.parametrize("version", ["4.10", "5.2"])
def test_libreswan_trusts_a_root_imported_after_another(version: str) -> None:
    """pluto caches NSS's root CAs: a new root needs whack --rereadcerts (5.x drops the cache) or, on 4.x, where
    --rereadcerts keeps it, a restarted pluto (measured: SEC_ERROR_UNTRUSTED_ISSUER otherwise)."""
    from harness.ike.certs import TestPki

    node = _lsw_node({"4.10": "ss59-lsw410-tunnel-esp", "5.2": "ss60-lsw52-transport-esp"}[version], "right", version)
    node.failing.add(("kill", "-0", "4242"))  # the old pluto is gone at once
    a = LibreswanAdapter(node)
    first, second = TestPki(name="CN=root one"), TestPki(name="CN=root two")
    a.load(_cert_conn(first, "one"))
    a.load(_cert_conn(first, "one again"))  # the same root: nothing to drop
    a.load(_cert_conn(second, "two"))
    rereads = [c for c in node.calls if c[:2] == ("sh", "-c") and f"{WHACK} --rereadcerts" in c[2]]
    if version == "5.2":
        assert len(rereads) == 2 and len(node.spawned) == 1
    else:
        assert len(node.spawned) == 2 and ("kill", "4242") in node.calls
        assert len(rereads) == 2  # each pluto its first root (harmless on 4.x)
