"""The control hooks of an external device: commands its owner supplies (profile [control]) and what they print.

A hook is an argv run without a shell, bounded in time (control.timeout) and in output (MAX_OUTPUT bytes read;
the rest is not read). Its output is untrusted text: `parse_swanctl` reads `swanctl --list-sas` output line by
line with anchored patterns, ignores what it does not recognise, caps the records it builds, and never raises
anything but ControlError (a LabError: BROKEN, naming the hook).
"""
from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence

from harness.errors import LabError
from harness.peers.base import ChildSaRecord, IkeSaRecord
from harness.runtime.profile import MAX_OUTPUT

MAX_RECORDS = 256
MAX_LINE = 1024


class ControlError(LabError):
    """A control hook failed, timed out, or printed nothing usable."""


def run_hook(argv: Sequence[str], timeout: float, what: str) -> str:
    """Run a hook; its stdout (at most MAX_OUTPUT bytes, decoded leniently); ControlError on failure or timeout."""
    try:
        p = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as e:
        raise ControlError(f"control.{what}: cannot run {argv[0]!r}: {e.strerror}") from None
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise ControlError(f"control.{what}: no answer within {timeout:.0f} s") from None
    text = out[:MAX_OUTPUT].decode("utf-8", "replace")
    if p.returncode:
        tail = err[:2000].decode("utf-8", "replace").strip() or text.strip()[-2000:]  # a hook may report on stdout
        raise ControlError(f"control.{what}: exit status {p.returncode}: {tail}")
    return text


# swanctl --list-sas (strongSwan 5.9/6.0):
#   lab: #3, ESTABLISHED, IKEv2, 8a4c2e1f0b9d3a77_i 1d2c3b4a59687706_r*
#     local  'gw' @ 198.18.0.3[500]
#     remote 'tester' @ 198.18.0.1[500]
#     lab: #2, reqid 1, INSTALLED, TRANSPORT, ESP:AES_GCM_16-128
#       in  c9a1b2c3,    252 bytes,     3 packets,     0s ago
#       out c0d1e2f3,    252 bytes,     3 packets,     0s ago
#       local  198.18.0.3/32
#       remote 198.18.0.1/32
_IKE = re.compile(r"^(\S{1,64}): #(\d{1,10}), ([A-Z_]{1,20}), IKEv2, ([0-9a-f]{16})_i(\*?) ([0-9a-f]{16})_r(\*?)$")
_ENDPOINT = re.compile(r"^(local|remote)\s+'([^']{0,255})' @ (\S{1,64})\[\d{1,5}\]")
_CHILD = re.compile(r"^(\S{1,64}): #(\d{1,10}), (?:reqid \d{1,10}, )?([A-Z_]{1,20}), ([A-Z_-]{1,20}), (ESP|AH):(\S{1,100})")
_COUNT = re.compile(r"^(in|out)\s+([0-9a-f]{8})(?:_i)?,\s+(\d{1,20}) bytes,\s+(\d{1,20}) packets")
_TS = re.compile(r"^(local|remote)\s+((?:[0-9a-fA-F.:/\[\]]{1,64}\s?){1,16})$")


def parse_swanctl(text: str, name: str) -> list[IkeSaRecord]:
    """IKE SAs (with their Child SAs and counters) from `swanctl --list-sas` output, named `name`; lenient."""
    out: list[IkeSaRecord] = []
    ike: IkeSaRecord | None = None
    child: ChildSaRecord | None = None
    for raw in text.splitlines()[: MAX_RECORDS * 16]:
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()[:MAX_LINE]
        if indent == 0 and (m := _IKE.match(line)):
            if len(out) >= MAX_RECORDS:
                break
            # the '*' marks the SPI that is the listing end's own: it initiated if the initiator SPI is starred
            ike = IkeSaRecord(name, m.group(3), "", "", int(m.group(4), 16), int(m.group(6), 16),
                              initiator=bool(m.group(5)), serial=int(m.group(2)))
            out.append(ike)
            child = None
        elif ike is None:
            continue
        elif indent <= 2 and (m := _ENDPOINT.match(line)):
            if m.group(1) == "local":
                ike.local_id, ike.local_addr = m.group(2), m.group(3)
            else:
                ike.remote_id, ike.remote_addr = m.group(2), m.group(3)
        elif indent <= 2 and (m := _CHILD.match(line)):
            if len(ike.children) >= MAX_RECORDS:
                continue
            child = ChildSaRecord(name, m.group(5), m.group(4).lower(), 0, 0, state=m.group(3), serial=int(m.group(2)),
                                  encr=m.group(6))
            ike.children.append(child)
        elif child is not None and (m := _COUNT.match(line)):
            spi, nbytes, packets = int(m.group(2), 16), int(m.group(3)), int(m.group(4))
            if m.group(1) == "in":
                child.spi_in, child.bytes_in, child.packets_in = spi, nbytes, packets
            else:
                child.spi_out, child.bytes_out, child.packets_out = spi, nbytes, packets
        elif child is not None and (m := _TS.match(line)):
            (child.local_ts if m.group(1) == "local" else child.remote_ts).extend(m.group(2).split()[:16])
    for s in out:
        s.children = [c for c in s.children if c.spi_in and c.spi_out]  # half-read Child SAs are not reported
    return out
