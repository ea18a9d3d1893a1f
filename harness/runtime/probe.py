"""`--runtime auto`: does the host kernel install an ESP SA? Then docker (host kernel), else uml (its own kernel).

The probe adds two ESP states in a scratch network namespace (`ip xfrm state add ... proto esp`, AES-CBC with
HMAC-SHA-256, then AES-GCM as AEAD) and deletes the namespace. Measured on this project's development host
(kernel 6.18, XFRM without ESP): `Error: Requested type not found.` (the extended ack of EPROTONOSUPPORT,
which strongSwan and Libreswan report as "Protocol not supported (93)"), so auto picks uml there.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from harness.lab import labels

PROBE_SRC, PROBE_DST = "198.18.255.1", "198.18.255.2"
PROBE_ALGORITHMS = (
    ("AES-CBC/HMAC-SHA-256", ["enc", "cbc(aes)", "0x" + "11" * 16, "auth-trunc", "hmac(sha256)", "0x" + "22" * 32, "128"]),
    ("AES-GCM", ["aead", "rfc4106(gcm(aes))", "0x" + "33" * 20, "128"]),  # AES-128 key + 4-byte salt
)
PROBE_TIMEOUT = 10


@dataclass(frozen=True)
class ProbeResult:
    """The probe's finding: can the host kernel hold an ESP SA, why not, the host kernel, the runtime picked."""

    esp: bool
    detail: str
    kernel: str
    choice: str

    def describe(self) -> str:
        """One line for a report or the setup command."""
        verdict = "installs ESP SAs" if self.esp else f"cannot install an ESP SA ({self.detail})"
        return f"host kernel {self.kernel} {verdict}: runtime auto -> {self.choice}"


def esp_state_argv(index: int = 0) -> list[str]:
    """The `ip xfrm state add` arguments of probe SA number index (0: AES-CBC/HMAC-SHA-256, 1: AES-GCM)."""
    return ["xfrm", "state", "add", "src", PROBE_SRC, "dst", PROBE_DST, "proto", "esp", "spi", f"0x{0x100 + index:08x}",
            "mode", "transport", *PROBE_ALGORITHMS[index][1]]


def _ip(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=PROBE_TIMEOUT)


def probe_esp() -> tuple[bool, str]:
    """(True, "") if the host kernel accepts an ESP SA in a scratch namespace, else (False, the kernel's answer)."""
    if os.geteuid() != 0:
        return False, "not root: cannot create a scratch network namespace to probe"
    ns = labels.resource_name(labels.current_run_id(), labels.worker_index(), f"probe{os.getpid()}")
    r = _ip("netns", "add", ns)
    if r.returncode != 0:
        return False, f"ip netns add: {r.stderr.strip()}"
    try:
        for i, (name, _) in enumerate(PROBE_ALGORITHMS):
            r = _ip("-n", ns, *esp_state_argv(i))
            if r.returncode != 0:
                return False, f"ESP {name}: {r.stderr.strip() or f'exit {r.returncode}'}"
        return True, ""
    finally:
        _ip("netns", "delete", ns)


@lru_cache(maxsize=1)
def probe() -> ProbeResult:
    """Probe once per process and pick the runtime: docker if the host kernel holds ESP SAs, else uml."""
    esp, detail = probe_esp()
    return ProbeResult(esp, detail, os.uname().release, "docker" if esp else "uml")
