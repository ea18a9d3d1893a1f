"""A scratch suite with one test of each verdict (run by test_html_report.py in pytester): FAILED with evidence,
BROKEN, UNIMPLEMENTED, NON-STRICT, DOCUMENTED (libreswan.json), SKIPPED and OK, against two made-up peers."""
import json
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP
from scapy.packet import Raw
from scapy.utils import wrpcap

from harness.errors import LabError, Refused, Unimplemented
from harness.report.attachments import attach
from harness.report.checks import should

PEERS = ["strongswan-6.0", "libreswan-5.2"]


@pytest.fixture(params=PEERS)
def peer(request, record_property):
    record_property("peer_version", {"strongswan-6.0": "6.0.1", "libreswan-5.2": "5.2"}[request.param])
    record_property("runtime", "uml")
    record_property("kernel", "6.12.0-uml")
    return request.param


def evidence(peer, directory):
    directory.mkdir(parents=True, exist_ok=True)
    wrpcap(str(directory / "capture.pcap"), [
        IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=500, dport=500) / Raw(b"\x00" * 28),
        IP(src="198.18.0.2", dst="198.18.0.1") / ESP(spi=0xC0FFEE01, seq=1, data=b"\x11" * 32)])
    wrpcap(str(directory / "capture.decrypted.pcap"), [IP(src="198.18.1.1", dst="198.18.2.1") / Raw(b"ping")])
    (directory / "keys.json").write_text(json.dumps({"ipsec_sas": [{"spi": "0xc0ffee01"}], "ike_sas": []}))
    (directory / f"{peer}.log").write_text("charon: received NO_PROPOSAL_CHOSEN notify\n")
    return [directory / n for n in ("capture.pcap", "capture.decrypted.pcap", "keys.json", f"{peer}.log")]


@pytest.mark.rfc(7296, "2.3", "MUST")
def test_ike_sa(peer, record_property, request):
    if peer == "strongswan-6.0":
        out = Path(request.config.getoption("--results-json")).parent
        files = evidence(peer, out / "captures" / "test_ike_sa")
        for f in files:
            record_property("artifact", str(f.relative_to(out)))
        attach(files)
        raise Refused("IKE_AUTH answered with NO_PROPOSAL_CHOSEN", requirement="RFC 7296 s2.3 MUST",
                      notify="NO_PROPOSAL_CHOSEN")


@pytest.mark.rfc(4302, "2.6", "MUST")
def test_ah_gmac(peer):
    if peer == "libreswan-5.2":
        raise Unimplemented("libreswan-5.2: no AH with AES-GMAC")


@pytest.mark.rfc(7296, "2.6", "SHOULD")
def test_cookie(peer, request):
    should(request, peer != "libreswan-5.2", "RFC 7296 s2.6 SHOULD", "no COOKIE asked under load")


def test_lab(peer):
    if peer == "strongswan-6.0":
        raise LabError("veth vanished")


@pytest.mark.rfc(7296, "1.3", "MUST")
def test_rekey_ke(peer):
    if peer == "libreswan-5.2":
        raise Refused("NO_PROPOSAL_CHOSEN for another KE group", requirement="RFC 7296 s1.3 MUST")


def test_nat_keepalive(peer):
    if peer == "strongswan-6.0":
        pytest.skip("no NAT router in this topology")
