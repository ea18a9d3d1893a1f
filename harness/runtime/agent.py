"""The host side of the in-guest agent (peers/common/ipsi-agent): framed JSON over a stream socket.

A frame is b"IPSI", a 4-byte big-endian length, and UTF-8 JSON. The agent speaks first ({"op": "ready",
kernel, modules...}); then each request gets one reply. The socket is a unix socket reached through
/proc/<pid>/root (docker) or the host end of a socketpair wired to the guest's /dev/ttyS0 (uml): neither
needs the lab network. AgentNode implements Node.exec/spawn/put_file/get_file on top of it.
"""
from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from harness.errors import LabError
from harness.runtime.base import DEFAULT_EXEC_TIMEOUT, ExecResult, Node

MAGIC = b"IPSI"
MAX_FRAME = 256 * 1024 * 1024
REPLY_GRACE = 15.0  # beyond an exec's own timeout, how long the agent may take to answer
LINE_FRAME = 2048  # the most request bytes sent before the agent acknowledges them: a UML guest's serial line
# stops for good when more than its tty's 4096-byte receive buffer is in flight (measured: a 4000-byte put hangs the
# 7.2um1 guest, 3000 bytes pass), so a larger request goes as acknowledged "part" frames and a closing "whole"
LOG_TAIL = 4000
NUDGE = b"\0"  # a byte outside any frame (the agent skips bytes before the magic), to wake a sleeping UML guest
NUDGE_AFTER = 2.0  # s without a reply before each nudge


def encode_frame(obj: dict[str, Any]) -> bytes:
    """One frame: magic, length, JSON."""
    body = json.dumps(obj).encode()
    return MAGIC + struct.pack(">I", len(body)) + body


class FrameReader:
    """Reads frames from a socket, skipping junk before the magic (a serial line may carry some). A read that times
    out consumes nothing of a frame that has begun to arrive: the next read takes it whole."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self, deadline: float) -> None:
        """One more chunk into buf; TimeoutError at deadline, EOFError when the peer closed."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(min(left, 0.5))
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            if not chunk:
                raise EOFError
            self.buf += chunk
            return

    def _take(self) -> dict[str, Any] | None:
        """The first whole frame in buf (junk before its magic dropped), or None while it is incomplete."""
        at = self.buf.find(MAGIC)
        if at < 0:
            self.buf = self.buf[-(len(MAGIC) - 1):]  # a magic may be arriving in pieces
            return None
        self.buf = self.buf[at:]
        if len(self.buf) < 8:
            return None
        (length,) = struct.unpack(">I", self.buf[4:8])
        if length > MAX_FRAME:
            raise ValueError(f"frame of {length} bytes")
        if len(self.buf) < 8 + length:
            return None
        body, self.buf = self.buf[8:8 + length], self.buf[8 + length:]
        obj = json.loads(body)
        if not isinstance(obj, dict):
            raise ValueError("frame is not a JSON object")
        return obj

    def read(self, deadline: float) -> dict[str, Any]:
        """The next frame's JSON object; TimeoutError at deadline, EOFError when the peer closed, ValueError if bad."""
        while (frame := self._take()) is None:
            self._fill(deadline)
        return frame


class AgentChannel:
    """A connection to one guest's agent: ready handshake, then one request at a time."""

    def __init__(self, sock: socket.socket, what: str, log_tail: Callable[[], str], nudge: bool = False) -> None:
        self.sock, self.what, self.log_tail, self.nudge = sock, what, log_tail, nudge
        self.nudges = 0  # nudges sent (nudge: a reply late by NUDGE_AFTER gets one NUDGE each NUDGE_AFTER)
        self.woken = 0  # replies that came after a nudge
        self.reader = FrameReader(sock)
        self.lock = threading.Lock()
        self.ready: dict[str, Any] = {}
        self.owed = 0  # replies still to come for requests whose caller stopped waiting (timeout, Ctrl-C)
        self.dead = ""  # why the channel no longer answers: later requests fail at once instead of waiting again

    def _fail(self, msg: str) -> LabError:
        return LabError(f"{self.what}: {msg}\n--- log tail ---\n{self.log_tail()[-LOG_TAIL:]}")

    def wait_ready(self, timeout: float, alive: Callable[[], bool] = lambda: True) -> dict[str, Any]:
        """Wait for the agent's ready frame; LabError with the log tail on timeout or if the guest dies."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = self.reader.read(min(deadline, time.monotonic() + 0.5))
            except TimeoutError:
                if not alive():
                    raise self._fail("exited before it was ready") from None
                if time.monotonic() >= deadline:
                    raise self._fail(f"not ready within {timeout:.0f} s") from None
                continue
            except (EOFError, OSError, ValueError) as e:
                raise self._fail(f"control channel failed before ready: {e!r}") from None
            if frame.get("op") == "ready":
                self.ready = frame
                return frame

    def request(self, req: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send req, return the agent's reply; LabError on timeout, a closed channel, or an agent error."""
        body = json.dumps(req).encode()
        if len(body) > LINE_FRAME:
            for at in range(0, len(body), LINE_FRAME):
                self._exchange({"op": "part", "data": _b64(body[at:at + LINE_FRAME])}, REPLY_GRACE, req.get("op"))
            req = {"op": "whole"}
        return self._exchange(req, timeout, req.get("op"))

    def _exchange(self, req: dict[str, Any], timeout: float, what: Any) -> dict[str, Any]:
        with self.lock:
            if self.dead:
                raise self._fail(f"no request sent ({what}): {self.dead}")
            try:
                while self.owed:  # the agent answers in order: a late reply belongs to an abandoned request
                    try:
                        self.reader.read(time.monotonic() + timeout)
                    except TimeoutError:
                        self.dead = f"the agent has not answered an earlier request after a further {timeout:.0f} s"
                        raise
                    self.owed -= 1
                self.sock.sendall(encode_frame(req))
                self.owed += 1
                reply = self._reply(time.monotonic() + timeout)
                self.owed -= 1
            except TimeoutError:
                nudged = f" ({self.nudges} nudges sent on this channel)" if self.nudge else ""
                raise self._fail(self.dead or f"agent gave no answer to {what} within {timeout:.0f} s{nudged}") from None
            except (EOFError, OSError, ValueError) as e:
                raise self._fail(f"control channel failed during {what}: {e!r}") from None
        if "error" in reply:
            raise LabError(f"{self.what}: {reply['error']}")
        return reply

    def _reply(self, deadline: float) -> dict[str, Any]:
        """The next frame by deadline. With nudge (a UML guest's serial line), a reply late by NUDGE_AFTER brings a
        NUDGE each NUDGE_AFTER: a UML 7.2 guest can sleep through a pending event until the next one comes
        (harness.runtime.uml_kick), and a serial line gets none from the kick on its network links."""
        if not self.nudge:
            return self.reader.read(deadline)
        nudged = False
        while True:
            try:
                reply = self.reader.read(min(deadline, time.monotonic() + NUDGE_AFTER))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise
                self.sock.sendall(NUDGE)
                self.nudges, nudged = self.nudges + 1, True
                continue
            self.woken += nudged
            return reply

    def close(self) -> None:
        """Close the host end."""
        try:
            self.sock.close()
        except OSError:
            pass


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


class AgentNode(Node):
    """A Node whose exec/spawn/put_file/get_file go through the in-guest agent."""

    channel: AgentChannel

    @property
    def ready_info(self) -> dict[str, Any]:
        """What the agent reported when ready: kernel, modules loaded and missing, init errors, init seconds."""
        return dict(self.channel.ready)

    def exec(self, argv: Sequence[str], timeout: float = DEFAULT_EXEC_TIMEOUT,
             input: bytes | str | None = None, env: dict[str, str] | None = None) -> ExecResult:
        """Run argv in the guest; LabError with the log tail if it outlives timeout (the agent kills it)."""
        if not argv:
            raise LabError(f"{self.name}: exec of an empty argv")
        req: dict[str, Any] = {"op": "exec", "argv": [str(a) for a in argv], "timeout": timeout}
        if input is not None:
            req["input"] = _b64(input)
        if env:
            req["env"] = env
        r = self.channel.request(req, timeout + REPLY_GRACE)
        out = base64.b64decode(r["stdout"]).decode(errors="replace")
        err = base64.b64decode(r["stderr"]).decode(errors="replace")
        if r.get("timeout"):
            raise LabError(f"{self.name}: {' '.join(argv)} did not exit within {timeout} s (killed)\n"
                           f"stdout: {out[-1000:]}\nstderr: {err[-1000:]}\n--- log tail ---\n{self.logs()[-LOG_TAIL:]}")
        return ExecResult(int(r["rc"]), out, err)

    def spawn(self, argv: Sequence[str], log_path: str, env: dict[str, str] | None = None) -> int:
        """Start a background process in the guest, output to log_path there; its pid in the guest."""
        req: dict[str, Any] = {"op": "spawn", "argv": [str(a) for a in argv], "log": log_path}
        if env:
            req["env"] = env
        return int(self.channel.request(req, REPLY_GRACE)["pid"])

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write path in the guest atomically (temp file + rename), parents created."""
        self.channel.request({"op": "put", "path": path, "data": _b64(data), "mode": mode}, REPLY_GRACE + len(data) / 1e5)

    def get_file(self, path: str) -> bytes:
        """Read path from the guest; LabError naming it if it cannot be read."""
        try:
            r = self.channel.request({"op": "get", "path": path}, REPLY_GRACE * 4)
        except LabError as e:
            raise LabError(f"{self.name}: cannot read {path}: {e}") from None
        return base64.b64decode(r["data"])

    def ping(self) -> float:
        """Round-trip time of one agent request, in seconds."""
        t0 = time.perf_counter()
        self.channel.request({"op": "ping"}, REPLY_GRACE)
        return time.perf_counter() - t0
