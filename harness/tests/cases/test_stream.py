"""harness.cases.stream: the echo stream's count rests on the answers the built-in end logged during the stream only."""
from __future__ import annotations

import threading

from harness.cases.stream import STREAM_IDENT, EchoStream, StreamCount


class FakeEnd:
    """A built-in end that answers every request through inbound SPI 0x200 + the outbound one, but drops seq 3."""

    def __init__(self) -> None:
        self.echo_log = [(STREAM_IDENT, 1, 0x999), (STREAM_IDENT, 2, 0x999)]  # an earlier case's answers
        self.sent = threading.Event()

    def stream_echo(self, dst: str, ident: int, seq: int) -> int:
        spi = 0x100 if seq < 3 else 0x101
        if seq != 3:
            self.echo_log.append((ident, seq, spi + 0x100))
        if seq >= 5:
            self.sent.set()
        return spi


def test_the_count_holds_this_streams_answers_and_names_the_lost():
    end = FakeEnd()
    s = EchoStream(end, "198.18.0.2", interval=0.001)
    s.start()
    assert end.sent.wait(5)
    count = s.stop()
    assert count.lost == [3]
    assert count.answered[1] == 0x200 and count.answered[4] == 0x201  # not the earlier case's 0x999
    through = count.by_sa()
    assert through["sent"]["0x00000100"] == 2 and through["answered"]["0x00000200"] == 2


def test_an_empty_count_loses_nothing():
    assert StreamCount().lost == [] and StreamCount().by_sa() == {"sent": {}, "answered": {}}


def test_requests_sent_while_no_child_sa_stood_are_unsendable_and_lost():
    count = StreamCount(sent={1: 0x100, 2: 0, 3: 0, 4: 0x101}, answered={1: 0x200, 4: 0x201})
    assert count.unsendable == [2, 3] and count.lost == [2, 3]
    assert StreamCount(sent={1: 0x100}).unsendable == []
