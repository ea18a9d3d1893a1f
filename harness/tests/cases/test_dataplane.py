"""The peer-kernel counters the data-plane verbs judge by: read in one command, compared per counter and per SA."""
from __future__ import annotations

from harness.cases.dataplane import read_counters

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
