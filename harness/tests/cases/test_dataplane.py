"""The peer-kernel counters the data-plane verbs judge by: read in one command, compared per counter and per SA."""
from __future__ import annotations

import pytest

from harness.cases.dataplane import parse_snmp, read_counters
from harness.errors import ParseError

STATE = """src 198.18.0.2 dst 198.18.0.3
\tproto esp spi 0x0dda283c(232400956) reqid 1(0x00000001) mode tunnel
\treplay-window 0 seq 0x00000000 flag af-unspec (0x00100000)
\taead rfc4106(gcm(aes)) 0xe7e0a3277d658c3aef883d86dd53d4212b386aa0 (160 bits) 128
\tlifetime current:
\t  {bytes}(bytes), {packets}(packets)
\t  add 2026-12-06 04:19:57 use -
\tstats:
\t  replay-window 0 replay {replay} failed {failed}
"""


class FakeAdapter:
    """Answers the one command read_counters runs with what the test sets."""

    def __init__(self) -> None:
        self.text = ""
        self.argv: list[str] = []

    def run(self, argv: list[str]) -> str:
        self.argv = argv
        return self.text

    def set(self, proto_error: int, no_states: int, packets: int, replay: int, failed: int) -> None:
        self.text = (f"XfrmInNoStates          \t{no_states}\nXfrmInStateProtoError   \t{proto_error}\n@@\n"
                     + STATE.format(bytes=packets * 100, packets=packets, replay=replay, failed=failed))


def test_what_rose_names_global_and_sa_counters():
    a = FakeAdapter()
    a.set(proto_error=3, no_states=0, packets=5, replay=0, failed=1)
    before = read_counters(a)
    a.set(proto_error=5, no_states=0, packets=6, replay=0, failed=3)
    after = read_counters(a)
    assert after.rose(before, ("esp", 0x0DDA283C)) == {"XfrmInStateProtoError": 2, "packets": 1, "failed": 2}
    assert a.argv[:2] == ["sh", "-c"] and "/proc/net/xfrm_stat" in a.argv[2]


def test_an_sa_the_kernel_does_not_hold_counts_zero():
    a = FakeAdapter()
    a.set(proto_error=0, no_states=1, packets=5, replay=2, failed=0)
    now = read_counters(a)
    assert now.sa_value("esp", 0x1234, "replay") == 0 and now.sa_value("esp", 0x0DDA283C, "replay") == 2
    assert now.rose(now, ("esp", 0x1234)) == {}


SNMP = """Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 12
Icmp: InMsgs OutMsgs OutDestUnreachs
Icmp: 3 4 1
Tcp: RtoAlgorithm MaxConn
Tcp: 1 -1
Icmp6OutMsgs                    \t7
Udp6InErrors                    \t0
"""


def test_snmp_counters_are_read_beside_xfrm_stat():
    a = FakeAdapter()
    a.set(proto_error=0, no_states=0, packets=1, replay=0, failed=0)
    a.text += "@@\n" + SNMP
    now = read_counters(a)
    assert now.stat["Icmp.OutDestUnreachs"] == 1 and now.stat["Tcp.MaxConn"] == -1
    assert now.stat["Icmp6OutMsgs"] == 7 and now.stat["XfrmInStateProtoError"] == 0
    a.text = a.text.replace("Icmp: 3 4 1", "Icmp: 3 5 2")
    assert read_counters(a).rose(now, ("esp", 0x0DDA283C)) == {"Icmp.OutMsgs": 1, "Icmp.OutDestUnreachs": 1}


def test_a_snmp_header_without_its_value_line_is_a_parse_error():
    with pytest.raises(ParseError, match="header line and its value line"):
        parse_snmp("Udp: InDatagrams InErrors\nIcmp6OutMsgs 3\n")
    with pytest.raises(ParseError, match="NAME COUNT"):
        parse_snmp("Icmp6OutMsgs three\n")
