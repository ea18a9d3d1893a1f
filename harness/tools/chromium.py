"""Headless Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe): open a page with the network
closed, wait for what it renders, and list every request it made.

The network is closed three ways: every host name resolves to nothing (--host-resolver-rules), every request goes
to a proxy that is a local socket recording each connection and answering none, and the DevTools Network domain
logs each request the page makes (and its workers and out-of-process frames, attached as they start). Chromium's own
background traffic is cut down by its flags; what remains (its clock, component updater, sign-in) goes to the proxy.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

FLAGS = ("--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-quic",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
         "--disable-default-apps", "--disable-domain-reliability", "--disable-breakpad", "--metrics-recording-only",
         "--disable-client-side-phishing-detection", "--disable-component-extensions-with-background-pages",
         "--no-service-autorun", "--no-pings", "--password-store=basic", "--use-mock-keychain", "--enable-automation",
         "--disable-field-trial-config", "--disable-search-engine-choice-screen", "--disable-dev-shm-usage",
         "--disable-features=OptimizationHints,MediaRouter,DialMediaRouteProvider,Translate,AutofillServerCommunication,"
         "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions,SigninInterceptBubble,PrivacySandboxSettings4",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--remote-debugging-pipe")
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "devtools:", "chrome-extension:")


def find_chromium() -> str | None:
    """The Chromium binary: $CHROMIUM, else chromium (Debian's package) or chromium-browser on PATH."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _high(fd: int) -> int:
    """fd moved to a number above 9 (the old one closed)."""
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class _Recorder:
    """A proxy that is a local TCP socket: it records each connection (and its first line) and closes it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.seen: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(2)
            try:
                first = conn.recv(2048).split(b"\r\n", 1)[0].decode("latin-1")
            except OSError:
                first = "(nothing sent)"
            self.seen.append(first)
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.sock.close()


@dataclass
class Page:
    """A page opened by Browser.open: evaluate JavaScript in it, wait for a condition."""

    browser: "Browser"
    session: str
    requests: list[str] = field(default_factory=list)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        r = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                   "awaitPromise": True}, self.session)
        if "exceptionDetails" in r:
            raise ConfigError(f"page script failed: {r['exceptionDetails'].get('exception', {}).get('description')}")
        return r.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> Any:
        """Evaluate expression until it is truthy (its value), or ConfigError after timeout with the last value."""
        deadline, value = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            self.browser.settle(0.2)
        raise ConfigError(f"page never satisfied {expression!r} in {timeout:.0f} s (last value: {value!r})")

    def outside_requests(self) -> list[str]:
        """Requests the page made to anything but itself (file:, data:, blob: ...)."""
        return [u for u in self.requests if not u.startswith(LOCAL_SCHEMES)]


class Browser:
    """A headless Chromium driven over its DevTools pipe; a context manager that stops it."""

    def __init__(self, binary: str | None = None) -> None:
        binary = binary or find_chromium()
        if not binary:
            raise ConfigError("Chromium is not installed (Debian package chromium)")
        self.proxy = _Recorder()
        self._profile = tempfile.TemporaryDirectory(prefix="ipsi-chromium-")
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()
        # the child's ends moved above 9 first, so that moving them onto 3 and 4 in the child clobbers neither
        cmd_r, out_w = (_high(cmd_r), _high(out_w))
        argv = [binary, *FLAGS, f"--user-data-dir={self._profile.name}",
                f"--proxy-server=http://127.0.0.1:{self.proxy.port}", "--proxy-bypass-list=<-loopback>"]
        if os.geteuid() == 0:
            argv.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox

        def pipes() -> None:  # the DevTools pipe is the child's fds 3 (commands in) and 4 (replies out)
            os.dup2(cmd_r, 3)
            os.dup2(out_w, 4)

        self.proc = subprocess.Popen([*argv, "about:blank"], preexec_fn=pipes, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(cmd_r)
        os.close(out_w)
        self._buf = b""
        self._id = 0
        self._replies: dict[int, dict] = {}
        self._pages: dict[str, Page] = {}

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Ask Chromium to close, stop it by pid if it does not, and remove its profile."""
        try:
            self.call("Browser.close", timeout=10)
        except ConfigError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._cmd_w, self._out_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.proxy.close()
        self._profile.cleanup()

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60.0) -> dict:
        """Send one DevTools command and wait for its reply; ConfigError on an error reply or no reply."""
        ident = self._send(method, params, session)
        deadline = time.monotonic() + timeout
        while ident not in self._replies:
            left = deadline - time.monotonic()
            if left <= 0 or not self.pump(min(1.0, left)):
                raise ConfigError(f"Chromium did not answer {method} (exit {self.proc.poll()})")
        reply = self._replies.pop(ident)
        if "error" in reply:
            raise ConfigError(f"Chromium: {method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        """Write one DevTools command; its id."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        except OSError as e:
            raise ConfigError(f"Chromium's DevTools pipe closed: {e}") from None
        return self._id

    def pump(self, timeout: float) -> bool:
        """Read what Chromium sent within timeout seconds; False when the pipe closed."""
        r, _, _ = select.select([self._out_r], [], [], timeout)
        if not r:
            return True
        chunk = os.read(self._out_r, 1 << 20)
        if not chunk:
            return False
        self._buf += chunk
        while b"\0" in self._buf:
            raw, self._buf = self._buf.split(b"\0", 1)
            msg = json.loads(raw)
            if "id" in msg:
                self._replies[msg["id"]] = msg
            elif msg.get("method") == "Network.requestWillBeSent" and msg.get("sessionId") in self._pages:
                self._pages[msg["sessionId"]].requests.append(msg["params"]["request"]["url"])
            elif msg.get("method") == "Target.attachedToTarget" and msg.get("sessionId") in self._pages:
                child = msg["params"]["sessionId"]  # a worker or out-of-process frame of the page: its requests too
                self._pages[child] = self._pages[msg["sessionId"]]
                self._send("Network.enable", {}, child)
                self._send("Runtime.runIfWaitingForDebugger", {}, child)
        return True

    def settle(self, seconds: float) -> None:
        """Read everything Chromium sends for the next seconds (requests a page makes late are logged)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and self.pump(min(0.2, left)):
            pass

    def open(self, url: str, width: int = 1400, height: int = 1000) -> Page:
        """A new tab that loaded url (its load event seen), recording each request it makes."""
        target = self.call("Target.createTarget", {"url": "about:blank", "newWindow": True})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        self._pages[session] = page
        self.call("Network.enable", {}, session)
        self.call("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True}, session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session)
        self.call("Page.navigate", {"url": url}, session)
        page.wait_for("document.readyState === 'complete'")
        return page

    def screenshot(self, page: Page, path: Path) -> Path:
        """A PNG of the page as it shows now."""
        import base64

        data = self.call("Page.captureScreenshot", {"format": "png"}, page.session)["data"]
        path.write_bytes(base64.b64decode(data))
        return path
