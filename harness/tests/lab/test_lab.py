"""The lab on this machine: namespaces, bridges, tester sockets, ping, NAT, capture, root namespace untouched."""
from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from harness.lab import Lab, labels, netns, read_pcap, topologies
from harness.lab.capture import write_keys
from harness.tests.lab.conftest import ipv4_of

pytestmark = pytest.mark.root
SIOCGSKNS = 0x894C  # ioctl: an fd for the network namespace a socket belongs to


def root_state() -> dict[str, object]:
    """The root namespace's links, routes and nftables ruleset (what the lab must never change)."""
    def j(*argv: str) -> object:
        r = subprocess.run(argv, capture_output=True, text=True, check=True)
        return json.loads(r.stdout or "null")
    return {"link": j("ip", "-j", "link"), "route4": j("ip", "-j", "-4", "route", "show", "table", "all"),
            "route6": j("ip", "-j", "-6", "route", "show", "table", "all"), "addr": j("ip", "-j", "addr"),
            "nft": j("nft", "-j", "list", "ruleset"), "forward": open("/proc/sys/net/ipv4/ip_forward").read()}


def test_create_and_destroy_every_topology_leaves_nothing():
    run = labels.new_run_id()
    for name, topo in topologies().items():
        with Lab(name, run=run, worker=1) as lab:
            assert netns.names(f"ipsi-{run}-") == sorted(lab.namespaces)
            br = subprocess.run(["ip", "-n", lab.name, "-j", "link", "show", "type", "bridge"],
                                capture_output=True, text=True, check=True)
            assert sorted(l["ifname"] for l in json.loads(br.stdout)) == sorted(lab.bridges)
            assert len(lab.bridges) == len(topo.segments) + 1
        assert netns.names(f"ipsi-{run}-") == []


def test_root_namespace_links_routes_and_firewall_do_not_change(namespace_peer, tmp_path):
    before = root_state()
    run = labels.new_run_id()
    for name in topologies():
        with Lab(name, run=run, worker=2) as lab:
            for p in lab.peers():
                namespace_peer(lab, p.name)
            lab.capture(tmp_path / name).stop()
    assert root_state() == before


def test_two_workers_labs_coexist_without_clash():
    run = labels.new_run_id()
    with Lab("tunnel", run=run, worker=0) as a, Lab("tunnel", run=run, worker=1) as b:
        assert not set(a.namespaces) & set(b.namespaces)
        addrs_a = {i.v4.ip for n in a.nodes.values() for i in n.interfaces}
        addrs_b = {i.v4.ip for n in b.nodes.values() for i in n.interfaces}
        assert not addrs_a & addrs_b
        assert a.ping("thost", a.tester.address("tlan")) and b.ping("thost", b.tester.address("tlan"))
        # the namespaces are separate networks: worker 0's host cannot reach worker 1's tester
        assert not a.ping("thost", b.tester.address("tlan"), timeout=0.3)


def _netns_inode_of_socket(s: socket.socket) -> int:
    fd = fcntl.ioctl(s.fileno(), SIOCGSKNS)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def test_tester_sockets_live_in_the_tester_namespace():
    with Lab("tunnel", run=labels.new_run_id(), worker=0) as lab:
        t = lab.tester
        tester_ino = os.stat(netns.path(t.netns)).st_ino
        assert tester_ino != os.stat("/proc/self/ns/net").st_ino
        socks = t.sockets()
        assert len(socks) == 4 + 4 + 2  # UDP 500/4500 x v4/v6, raw ESP/AH x v4/v6, AF_PACKET per interface
        assert all(_netns_inode_of_socket(s) == tester_ino for s in socks)
        assert {(s.type, s.proto) for s in t.raw.values()} == {(socket.SOCK_RAW, 50), (socket.SOCK_RAW, 51)}
        # a datagram from the host behind the tester reaches the kept-open IKE socket
        thost = lab.node("thost").netns
        send = netns.run_in(thost, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
        with send:
            send.sendto(b"hello 500", (t.address("tlan"), 500))
        data, src = t.udp[(4, 500)].recvfrom(100)
        assert (data, src[0]) == (b"hello 500", lab.node("thost").address())


@pytest.mark.parametrize("version", [4, 6])
def test_ping_between_tester_and_host_across_a_bridge(version):
    with Lab("tunnel", run=labels.new_run_id(), worker=0) as lab:
        assert lab.ping("tester", lab.node("thost").address(version=version), count=2)
        assert lab.ping("thost", lab.tester.address("tlan", version), count=2)
        # no route from the tester to the peer's LAN: tunnel traffic must go through IPsec, not around it
        assert not lab.ping("tester", lab.node("phost").address(version=version), timeout=0.3)


def test_nat_router_rewrites_source_addresses(tmp_path, namespace_peer):
    with Lab("nat", run=labels.new_run_id(), worker=0) as lab:
        namespace_peer(lab, "peer")
        cap = lab.capture(tmp_path)
        peer_addr = lab.node("peer").address()
        assert lab.ping("tester", peer_addr, count=2)
        time.sleep(0.05)
        cap.stop()
        inside = [ipv4_of(f) for _, f in read_pcap(cap.files["inside"])]
        outside = [ipv4_of(f) for _, f in read_pcap(cap.files["outside"])]
        tester, nat_out = lab.tester.address(), lab.node("nat").address("outside")
        assert (tester, peer_addr) in {(p[0], p[1]) for p in inside if p and p[2] == 1}
        out_sources = {p[0] for p in outside if p and p[2] == 1 and p[1] == peer_addr}
        assert out_sources == {nat_out}, "the NAT router must replace the tester's source address"
        # rules exist only inside the NAT router's namespace
        rules = lab.exec("nat", ["nft", "list", "ruleset"]).stdout
        assert "masquerade" in rules


def test_capture_holds_every_segments_packets_and_keys(tmp_path):
    with Lab("tunnel", run=labels.new_run_id(), worker=0) as lab:
        with lab.capture(tmp_path) as cap:
            thost = lab.node("thost").netns
            s = netns.run_in(thost, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
            with s:
                for i in range(5):
                    s.sendto(b"probe %d" % i, (lab.tester.address("tlan"), 4500))
            for _ in range(5):
                assert select.select([lab.tester.udp[(4, 4500)]], [], [], 2)[0]
                lab.tester.udp[(4, 4500)].recv(100)
            assert lab.ping("tester", lab.tester.address("wan"))  # loopback: never on a segment
        records = read_pcap(cap.files["tlan"])
        udp = [ipv4_of(f) for _, f in records]
        payloads = sorted(p[3][8:] for p in udp if p and p[2] == 17)
        assert payloads == [b"probe %d" % i for i in range(5)]
        ts = [t for t, _ in records]
        # frames taken on two CPUs may carry kernel timestamps a few microseconds out of order (seen: 2.9 us)
        assert all(b - a > -1_000_000 for a, b in zip(ts, ts[1:])) and ts[0] > 1_600_000_000 * 10**9
        wan = [ipv4_of(f) for _, f in read_pcap(cap.files["wan"])]
        assert not [p for p in wan if p and p[2] in (1, 17)], "a ping to the tester's own address stays local"
        assert set(cap.files) == {"wan", "tlan", "plan", "mgmt"}
        path = write_keys(tmp_path, [])
        assert json.loads(path.read_text()) == {"ipsec_sas": []}


# The child stands in for a user's run in a terminal: SIGINT delivers KeyboardInterrupt there. A run started
# in the background by a non-interactive shell inherits SIGINT ignored (POSIX: asynchronous commands ignore
# SIGINT), and Python keeps it ignored: that, not a slow teardown, made this test wait 20 s and fail in CI-like
# runs. SIGUSR1 dumps the child's stacks, so a hang shows where it is.
CHILD = """import faulthandler, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
faulthandler.register(signal.SIGUSR1, all_threads=True)
from harness.lab import Lab
lab = Lab('nat', run=sys.argv[1]).build()
print('ready', flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("signum,name", [(15, "SIGTERM"), (2, "SIGINT")], ids=["SIGTERM", "SIGINT"])
def test_a_signal_tears_the_lab_down(tmp_path, signum, name):
    run = labels.new_run_id()
    child = subprocess.Popen([sys.executable, "-c", CHILD, run], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=os.getcwd())
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        assert len(netns.names(f"ipsi-{run}-")) == 3
        t0 = time.monotonic()
        child.send_signal(signum)
        try:
            _, err = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGUSR1)
            time.sleep(1)
            child.kill()
            _, err = child.communicate()
            raise AssertionError(f"the lab did not tear down within 60 s of {name}; the child's stacks:\n{err}") from None
        assert "KeyboardInterrupt" in err, f"{name} unwinds like Ctrl-C: {err}"
        assert time.monotonic() - t0 < 60
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        left = netns.names(f"ipsi-{run}-")
        for name_ in left:  # a failed teardown must not leak into the next test
            netns.delete(name_)
    assert left == []
    assert not labels.state_dir(run).exists()
