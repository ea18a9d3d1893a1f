"""The agent protocol end to end over a socketpair: the real in-guest agent's serve() against AgentChannel."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import socket
import threading
from pathlib import Path
from types import ModuleType

import pytest

from harness.errors import LabError
from harness.runtime import agent
from harness.runtime.images import PEERS_DIR


def _load_agent() -> ModuleType:
    path = PEERS_DIR / "common" / "ipsi-agent"
    loader = importlib.machinery.SourceFileLoader("ipsi_agent_under_test", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


class _Node(agent.AgentNode):
    runtime = "test"

    def __init__(self, channel: agent.AgentChannel) -> None:
        self.name, self.channel = "test-node", channel

    def logs(self) -> str:
        return "the guest log"

    def stop(self) -> None:
        self.channel.close()


@pytest.fixture
def node() -> _Node:
    guest_mod = _load_agent()
    host, guest = socket.socketpair()
    t = threading.Thread(target=lambda: (guest_mod.serve(guest.recv, guest.sendall), guest.close()), daemon=True)
    t.start()
    ch = agent.AgentChannel(host, "test-node", lambda: "the guest log")
    ready = ch.wait_ready(5)
    assert ready["op"] == "ready" and ready["kernel"]
    n = _Node(ch)
    yield n
    n.stop()
    t.join(5)


def test_exec_returns_status_and_both_streams(node: _Node) -> None:
    r = node.exec(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert r == (3, "out\n", "err\n")
    assert node.exec(["cat"], input="fed\n").stdout == "fed\n"
    assert node.exec(["sh", "-c", "echo $IPSI_X"], env={"IPSI_X": "y"}).stdout == "y\n"


def test_exec_of_a_missing_program_is_127(node: _Node) -> None:
    r = node.exec(["/nonexistent/program"])
    assert r.rc == 127 and "program" in r.stderr


def test_exec_timeout_kills_and_raises_with_the_log_tail(node: _Node) -> None:
    with pytest.raises(LabError, match="did not exit within 0.3 s") as e:
        node.exec(["sleep", "30"], timeout=0.3)
    assert "the guest log" in str(e.value)
    assert node.exec(["true"]).rc == 0  # the channel is still usable


def test_files_round_trip_and_errors_name_the_path(node: _Node, tmp_path: Path) -> None:
    p = tmp_path / "d" / "f.bin"
    data = bytes(range(256)) * 50
    node.put_file(str(p), data, 0o600)
    assert p.read_bytes() == data and (p.stat().st_mode & 0o777) == 0o600
    assert node.get_file(str(p)) == data
    with pytest.raises(LabError, match="missing.conf"):
        node.get_file(str(tmp_path / "missing.conf"))


def test_spawn_runs_in_the_background_with_a_log(node: _Node, tmp_path: Path) -> None:
    log = tmp_path / "bg.log"
    pid = node.spawn(["sh", "-c", "echo started"], str(log))
    assert pid > 0
    for _ in range(100):
        if log.exists() and log.read_text() == "started\n":
            break
        threading.Event().wait(0.02)
    assert log.read_text() == "started\n"


def test_unknown_op_is_a_lab_error(node: _Node) -> None:
    with pytest.raises(LabError, match="unknown op"):
        node.channel.request({"op": "format-disk"}, 5)


def test_frame_reader_skips_junk_before_the_magic() -> None:
    a, b = socket.socketpair()
    a.sendall(b"kernel noise\r\n" + agent.encode_frame({"op": "ready", "n": 1}) + b"\x00junk" + agent.encode_frame({"n": 2}))
    r = agent.FrameReader(b)
    import time

    assert r.read(time.monotonic() + 2) == {"op": "ready", "n": 1}
    assert r.read(time.monotonic() + 2) == {"n": 2}
    with pytest.raises(TimeoutError):
        r.read(time.monotonic() + 0.1)
    a.close()
    with pytest.raises(EOFError):
        r.read(time.monotonic() + 2)
    b.close()


def test_a_dead_channel_before_ready_is_a_lab_error_with_the_log() -> None:
    a, b = socket.socketpair()
    b.close()
    with pytest.raises(LabError, match="before ready") as e:
        agent.AgentChannel(a, "g", lambda: "console says why").wait_ready(2)
    assert "console says why" in str(e.value)


def test_a_reply_to_an_abandoned_request_is_not_taken_for_the_next_ones(node: _Node) -> None:
    # the caller stops waiting (a grace shorter than the command; Ctrl-C does the same mid-request): the reply
    # that comes later belongs to that request, not to the next one (seen: `ip xfrm state` answered by a ping)
    with pytest.raises(LabError, match="no answer to exec"):
        node.channel.request({"op": "exec", "argv": ["sh", "-c", "sleep 0.5; echo late"], "timeout": 5}, 0.1)
    r = node.exec(["echo", "mine"])
    assert (r.rc, r.stdout) == (0, "mine\n")
    assert node.channel.owed == 0


def test_a_large_request_goes_in_parts_no_longer_than_a_serial_line_takes(node: _Node, tmp_path: Path) -> None:
    """More than LINE_FRAME request bytes never travel unacknowledged (a UML serial line stalls beyond 4096)."""
    sent: list[int] = []
    sock = node.channel.sock

    class Recording:
        def sendall(self, data: bytes) -> None:
            sent.append(len(data))
            sock.sendall(data)

        def __getattr__(self, name: str):
            return getattr(sock, name)

    node.channel.sock = Recording()  # type: ignore[assignment]
    data = bytes(range(256)) * 400
    path = tmp_path / "large.bin"
    node.put_file(str(path), data)
    assert node.get_file(str(path)) == data
    assert node.exec(["cat"], input=data.hex()).stdout == data.hex()
    assert len(sent) > 2 * len(data) // agent.LINE_FRAME
    assert max(sent) < 4096, max(sent)  # a UML tty receive buffer


def test_a_late_reply_is_nudged_and_the_agent_skips_the_nudges(node: _Node, monkeypatch) -> None:
    """A UML channel sends a NUDGE byte each NUDGE_AFTER while a reply is late; the real agent reads them as junk."""
    monkeypatch.setattr(agent, "NUDGE_AFTER", 0.1)
    node.channel.nudge = True
    r = node.exec(["sh", "-c", "sleep 0.5; echo slow"])
    assert (r.rc, r.stdout) == (0, "slow\n") and node.channel.nudges >= 3 and node.channel.woken == 1
    assert node.exec(["echo", "next"]).stdout == "next\n" and node.channel.woken == 1  # a prompt reply: no nudge


def test_a_guest_that_sleeps_until_an_event_answers_after_a_nudge(monkeypatch) -> None:
    """The stall a nudge is for: a guest that holds its reply until something more arrives on the line."""
    monkeypatch.setattr(agent, "NUDGE_AFTER", 0.1)
    host, guest = socket.socketpair()

    def sleepy() -> None:
        guest.sendall(agent.encode_frame({"op": "ready", "kernel": "k"}))
        reader = agent.FrameReader(guest)
        import time

        reader.read(time.monotonic() + 5)  # the request
        while guest.recv(1) != agent.NUDGE:
            pass
        guest.sendall(agent.encode_frame({"answer": 42}))

    t = threading.Thread(target=sleepy, daemon=True)
    t.start()
    ch = agent.AgentChannel(host, "sleepy", lambda: "", nudge=True)
    ch.wait_ready(5)
    assert ch.request({"op": "ping"}, 5) == {"answer": 42} and ch.woken == 1
    t.join(5)
    ch.close()
    guest.close()


def test_a_read_that_times_out_mid_frame_leaves_the_frame_whole() -> None:
    """A nudged channel reads with short deadlines: a frame still arriving when one passes must not be lost."""
    import time

    a, b = socket.socketpair()
    whole = agent.encode_frame({"reply": "x" * 5000})
    a.sendall(b"junk" + whole[:6])  # the magic and half the length
    r = agent.FrameReader(b)
    with pytest.raises(TimeoutError):
        r.read(time.monotonic() + 0.2)
    a.sendall(whole[6:3000])
    with pytest.raises(TimeoutError):
        r.read(time.monotonic() + 0.2)
    a.sendall(whole[3000:])
    assert r.read(time.monotonic() + 2) == {"reply": "x" * 5000}
    a.close()
    b.close()
