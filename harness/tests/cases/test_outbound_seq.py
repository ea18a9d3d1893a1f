"""set_oseq's reading of the in-guest program's answer, and the program's netlink messages against a fake socket."""
from __future__ import annotations

import socket
import struct
import sys
import types

import pytest

from harness.cases.outbound_seq import PROGRAM, set_oseq
from harness.errors import LabError, UnsupportedFeature


class Node:
    def __init__(self, out: str) -> None:
        self.out, self.argv = out, None

    def run(self, argv: list[str]) -> str:
        self.argv = argv
        return self.out


def test_the_answer_names_the_form_or_what_refused() -> None:
    node = Node("ok esn\n")
    assert set_oseq(node, "198.18.0.2", "198.18.0.3", 0xC0FFEE, "ESP", (1 << 32) - 3) == "esn"
    assert node.argv[3:] == ["198.18.0.2", "198.18.0.3", "c0ffee", "50", str((1 << 32) - 3)]
    with pytest.raises(UnsupportedFeature, match="XFRM_MSG_NEWAE 22 Invalid argument"):
        set_oseq(Node("refused XFRM_MSG_NEWAE 22 Invalid argument"), "198.18.0.2", "198.18.0.3", 1, "esp", 5)
    with pytest.raises(LabError, match="unexpected output"):
        set_oseq(Node("Traceback ..."), "198.18.0.2", "198.18.0.3", 1, "ah", 5)


def _run(replay_attr: tuple[int, bytes], seq: int, monkeypatch, capsys) -> list[bytes]:  # noqa: ANN001
    """PROGRAM run against a kernel stand-in answering GETAE with replay_attr and NEWAE with success."""
    sent: list[bytes] = []

    class Sock:
        def __init__(self, *a: object) -> None:
            pass

        def bind(self, a: object) -> None:
            pass

        def send(self, data: bytes) -> None:
            sent.append(data)

        def recv(self, n: int) -> bytes:
            if len(sent) == 1:  # GETAE -> NEWAE with the state's aevent id and its replay attribute
                kind, val = replay_attr
                attr = struct.pack("=HH", 4 + len(val), kind) + val
                body = sent[0][16:64] + attr
                return struct.pack("=IHHII", 16 + len(body), 0x1E, 0, 1, 0) + body
            return struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", 0) + sent[-1][:16]

    fake = types.SimpleNamespace(**{k: getattr(socket, k) for k in dir(socket) if k.isupper() or k == "inet_pton"})
    fake.socket = Sock
    monkeypatch.setitem(sys.modules, "socket", fake)
    monkeypatch.setattr(sys, "argv", ["x", "198.18.0.2", "198.18.0.3", "c0ffee", "50", str(seq)])
    exec(compile(PROGRAM, "program", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out.strip() in ("ok esn", "ok legacy")
    return sent


def test_the_program_writes_oseq_and_oseq_hi_of_the_esn_form(monkeypatch, capsys) -> None:  # noqa: ANN001
    esn = struct.pack("=IIIIII", 4, 7, 9, 0, 0, 128) + b"\0" * 16
    get, new = _run((23, esn), (1 << 32) + 5, monkeypatch, capsys)
    assert struct.unpack_from("=HHI", get, 4)[0] == 0x1F and len(get) == 16 + 48
    length, kind, flags = struct.unpack_from("=IHH", new)
    assert kind == 0x1E and flags & 0x100 and length == len(new)
    assert new[16:64] == get[16:64]  # the same SA
    bmp_len, oseq, seq, oseq_hi, seq_hi, window = struct.unpack_from("=IIIIII", new, 68)
    assert (bmp_len, oseq, seq, oseq_hi, seq_hi, window) == (4, 5, 9, 1, 0, 128)
    assert struct.unpack_from("!I", get, 32)[0] == 0xC0FFEE  # after the 16-byte header and daddr: the SPI, network order


def test_the_program_writes_oseq_of_the_legacy_form(monkeypatch, capsys) -> None:  # noqa: ANN001
    _, new = _run((10, struct.pack("=III", 7, 9, 1)), (1 << 32) - 3, monkeypatch, capsys)
    assert struct.unpack_from("=HH", new, 64) == (16, 10)
    assert struct.unpack_from("=III", new, 68) == ((1 << 32) - 3, 9, 1)
