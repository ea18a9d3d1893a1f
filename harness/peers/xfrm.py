"""Parsers of the kernel's IPsec state as iproute2 prints it: `ip [-s] xfrm state`, `ip [-s] xfrm policy`, /proc/net/xfrm_stat.

The kernel is the ground truth both reference peers install into, so SPIs, algorithms, keys,
counters (bytes/packets), the replay window and the per-SA error counters (replay, integrity
failures) are read from here. Lines this parser does not know are kept verbatim in `extra`;
a known line that does not parse raises ParseError naming the line (as field) and its offset.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.errors import ParseError

WHAT_STATE = "ip xfrm state"
WHAT_POLICY = "ip xfrm policy"


@dataclass
class XfrmAlgorithm:
    """An algorithm of a state: kind (enc, auth, auth-trunc, aead, comp), kernel name, key bytes, ICV/trunc bits."""

    kind: str
    name: str
    key: bytes
    bits: int | None = None  # aead: ICV length; auth-trunc: truncation length


@dataclass
class XfrmState:
    """One SA of `ip [-s] xfrm state`: addresses, protocol, SPI, mode, algorithms, replay data, lifetimes, counters."""

    src: str
    dst: str
    proto: str
    spi: int
    reqid: int = 0
    mode: str = ""
    replay_window: int = 0
    seq: int = 0
    flags: list[str] = field(default_factory=list)
    algorithms: list[XfrmAlgorithm] = field(default_factory=list)
    encap: dict[str, str] | None = None   # type, sport, dport, addr (UDP encapsulation, RFC 3948)
    selector: str = ""
    replay_esn_format: bool = False  # the kernel keeps an ESN-style replay state (XFRMA_REPLAY_ESN_VAL), ESN or not
    replay: dict[str, int] = field(default_factory=dict)      # anti-replay context: seq, oseq, seq_hi, oseq_hi, bitmap, ...
    replay_bitmap: list[int] = field(default_factory=list)    # ESN-style context: the bitmap's 32-bit words
    lifetime_config: dict[str, str] = field(default_factory=dict)
    current_bytes: int | None = None     # -s only
    current_packets: int | None = None   # -s only
    stats: dict[str, int] = field(default_factory=dict)      # -s only: replay-window, replay, failed (integrity)
    extra: list[str] = field(default_factory=list)

    @property
    def esn(self) -> bool:
        """True if the SA uses extended sequence numbers (flag esn)."""
        return "esn" in self.flags

    @property
    def window(self) -> int:
        """The effective replay window in packets (the ESN-style context's when present, else replay-window)."""
        return self.replay.get("replay_window", self.replay_window)

    def algorithm(self, kind: str) -> XfrmAlgorithm | None:
        """The state's algorithm of one kind (enc, auth, auth-trunc, aead), or None."""
        return next((a for a in self.algorithms if a.kind == kind), None)

    @property
    def integrity_failed(self) -> int | None:
        """Packets that failed the ICV check on this SA (stats 'failed'), None without -s."""
        return self.stats.get("failed")

    @property
    def replay_errors(self) -> int | None:
        """Packets dropped as replayed on this SA (stats 'replay'), None without -s."""
        return self.stats.get("replay")

    @property
    def replay_window_errors(self) -> int | None:
        """Packets dropped as outside (left of) the replay window (stats 'replay-window'), None without -s."""
        return self.stats.get("replay-window")


@dataclass
class XfrmPolicy:
    """One policy of `ip [-s] xfrm policy`: selector, direction, priority, action and templates."""

    src: str
    dst: str
    dir: str
    priority: int = 0
    action: str = "allow"
    proto: str = ""
    templates: list[dict[str, str]] = field(default_factory=list)
    socket: bool = False     # a per-socket policy (IKE daemons bypass their own UDP sockets)
    index: int = 0
    extra: list[str] = field(default_factory=list)


_INT = r"(\d+)"
_SPI = re.compile(r"^proto (\S+) spi 0x([0-9a-f]+)(?:\(\d+\))? reqid (\d+)(?:\(0x[0-9a-f]+\))? mode (\S+)$")
_REPLAY = re.compile(r"^replay-window (\d+) seq 0x([0-9a-f]+) flag ?(.*)$")
# the key may be absent: an empty one is printed as nothing at all ("enc ecb(cipher_null) ", ENCR_NULL, measured)
_ALG = re.compile(r"^(enc|auth|auth-trunc|aead|comp) (\S+)(?: (?:0x([0-9a-f]*)|\"\"))?(?: ?\((\d+) bits\))?(?: (\d+))?$")
_ENCAP = re.compile(r"^encap type (\S+) sport (\d+) dport (\d+) addr (\S+)$")
_KV_HEX = re.compile(r"(\w[\w-]*) 0x([0-9a-f]+)")
_STATS = re.compile(r"^replay-window (\d+) replay (\d+) failed (\d+)$")
_CURRENT = re.compile(r"^(\d+)\(bytes\), (\d+)\(packets\)$")


def _fail(what: str, line: str, offset: int, reason: str) -> ParseError:
    return ParseError(what, line.strip()[:60] or "(empty line)", offset, reason)


def _blocks(text: str, head: str) -> list[tuple[int, list[tuple[int, str]]]]:
    """Split on lines starting with `head` at column 0; each block: (offset, [(offset, stripped line)])."""
    blocks: list[tuple[int, list[tuple[int, str]]]] = []
    offset = 0
    for raw in text.splitlines(keepends=True):
        line = raw.rstrip("\n")
        if line.strip():
            if line.startswith(head):
                blocks.append((offset, [(offset, line.strip())]))
            elif not blocks:
                raise _fail(WHAT_STATE if head == "src " else WHAT_POLICY, line, offset, f"expected a line starting with {head!r}")
            else:
                blocks[-1][1].append((offset, line.strip()))
        offset += len(raw)
    return blocks


def parse_xfrm_state(text: str) -> list[XfrmState]:
    """Parse the output of `ip xfrm state` or `ip -s xfrm state` (iproute2 5.x/6.x) into XfrmState records."""
    states = []
    for offset, lines in _blocks(text, "src "):
        head = lines[0][1].split()
        if len(head) != 4 or head[2] != "dst":
            raise _fail(WHAT_STATE, lines[0][1], offset, "expected 'src ADDR dst ADDR'")
        if len(lines) < 2:
            raise _fail(WHAT_STATE, lines[0][1], offset, "state without a 'proto ... spi' line")
        off, line = lines[1]
        m = _SPI.match(line)
        if not m:
            raise _fail(WHAT_STATE, line, off, "expected 'proto P spi 0xSPI reqid N mode M'")
        st = XfrmState(head[1], head[3], m.group(1), int(m.group(2), 16), int(m.group(3)), m.group(4))
        section = ""
        for off, line in lines[2:]:
            if line in ("lifetime config:", "lifetime current:", "stats:"):
                section = line[:-1]
                continue
            if line.startswith("replay-window ") and " seq 0x" in line:
                m = _REPLAY.match(line)
                if not m:
                    raise _fail(WHAT_STATE, line, off, "expected 'replay-window N seq 0xS flag ...'")
                st.replay_window, st.seq = int(m.group(1)), int(m.group(2), 16)
                # iproute2 prints "flag esnextra_flag dont-encap-dscp" for an ESN SA with extra flags (no space
                # before "extra_flag"; seen on Libreswan 5.2's outbound SAs): the flags are split apart first
                flags = re.sub(r"\(0x[0-9a-f]+\)", "", m.group(3)).replace("extra_flag", " extra_flag ")
                st.flags = [f for f in flags.split() if f and f != "extra_flag"]
                section = ""
            elif re.match(r"^(enc|auth|auth-trunc|aead|comp) ", line):
                m = _ALG.match(line)
                if not m:
                    raise _fail(WHAT_STATE, line, off, "expected 'KIND NAME 0xKEY [(N bits)] [ICV bits]'")
                key = bytes.fromhex(m.group(3) or "")
                if m.group(4) and int(m.group(4)) != 8 * len(key):
                    raise _fail(WHAT_STATE, line, off, f"key is {8 * len(key)} bits, line says {m.group(4)}")
                st.algorithms.append(XfrmAlgorithm(m.group(1), m.group(2), key, int(m.group(5)) if m.group(5) else None))
            elif line.startswith("encap "):
                m = _ENCAP.match(line)
                if not m:
                    raise _fail(WHAT_STATE, line, off, "expected 'encap type T sport N dport N addr A'")
                st.encap = {"type": m.group(1), "sport": m.group(2), "dport": m.group(3), "addr": m.group(4)}
            elif line.startswith("anti-replay"):
                # "anti-replay context: seq 0x3, oseq 0x0, bitmap 0x7" (legacy) or "anti-replay esn context:" followed
                # by "seq-hi .., seq .., oseq-hi .., oseq ..", "replay_window N, bitmap-length M" and the bitmap words
                st.replay_esn_format = line.startswith("anti-replay esn")
                section = "replay"
                for k, v in _KV_HEX.findall(line):
                    st.replay[k.replace("-", "_")] = int(v, 16)
            elif section == "replay" and line.startswith("seq-hi "):
                for k, v in _KV_HEX.findall(line):
                    st.replay[k.replace("-", "_")] = int(v, 16)
            elif section == "replay" and line.startswith("replay_window "):
                for k, v in re.findall(r"(replay_window|bitmap-length) (\d+)", line):
                    st.replay[k.replace("-", "_")] = int(v)
            elif section == "replay" and re.fullmatch(r"[0-9a-f]{8}( [0-9a-f]{8})*", line):
                st.replay_bitmap += [int(w, 16) for w in line.split()]
            elif line.startswith("sel "):
                st.selector = line[4:]
            elif section == "lifetime current" and _CURRENT.match(line):
                m = _CURRENT.match(line)
                assert m
                st.current_bytes, st.current_packets = int(m.group(1)), int(m.group(2))
            elif section == "lifetime current" and line.startswith("add "):
                st.lifetime_config["current"] = line
            elif section == "lifetime config" and (line.startswith("limit: ") or line.startswith("expire ")):
                kind = line.split(":", 1)[0]
                if "(bytes)" in line:
                    kind += " bytes"
                elif "(packets)" in line:
                    kind += " packets"
                st.lifetime_config[kind] = line.split(":", 1)[1].strip()
            elif section == "stats":
                m = _STATS.match(line)
                if not m:
                    raise _fail(WHAT_STATE, line, off, "expected 'replay-window N replay N failed N'")
                st.stats = {"replay-window": int(m.group(1)), "replay": int(m.group(2)), "failed": int(m.group(3))}
            else:
                st.extra.append(line)
        states.append(st)
    return states


def parse_xfrm_policy(text: str) -> list[XfrmPolicy]:
    """Parse the output of `ip [-s] xfrm policy` into XfrmPolicy records (socket policies included)."""
    out = []
    for offset, lines in _blocks(text, "src "):
        toks = lines[0][1].split()
        if len(toks) < 4 or toks[2] != "dst":
            raise _fail(WHAT_POLICY, lines[0][1], offset, "expected 'src SEL dst SEL ...'")
        pol = XfrmPolicy(toks[1], toks[3], "")
        if "proto" in toks:
            pol.proto = toks[toks.index("proto") + 1]
        tmpl: dict[str, str] | None = None
        for off, line in lines[1:]:
            t = line.split()
            if t[0] in ("dir", "socket") and len(t) >= 2:
                pol.dir, pol.socket = t[1], t[0] == "socket"
                attrs = dict(zip(t[2::2], t[3::2]))
                pol.action = attrs.get("action", pol.action)
                try:
                    pol.priority = int(attrs.get("priority", "0"))
                    pol.index = int(attrs.get("index", "0"))
                except ValueError:
                    raise _fail(WHAT_POLICY, line, off, "priority/index is not an integer") from None
            elif t[0] == "tmpl":
                tmpl = dict(zip(t[1::2], t[2::2]))
                pol.templates.append(tmpl)
            elif tmpl is not None and t[0] in ("proto", "level", "enc-mask"):
                tmpl.update(zip(t[0::2], t[1::2]))
            elif t[0] == "action":
                pol.action = t[1]
            else:
                pol.extra.append(line)
        if not pol.dir:
            raise _fail(WHAT_POLICY, lines[0][1], offset, "policy without a 'dir' line")
        out.append(pol)
    return out


def parse_xfrm_stat(text: str) -> dict[str, int]:
    """Parse /proc/net/xfrm_stat (the kernel's global XFRM error counters, e.g. XfrmInStateProtoError)."""
    out = {}
    offset = 0
    for raw in text.splitlines(keepends=True):
        t = raw.split()
        if t:
            if len(t) != 2 or not t[1].isdigit():
                raise ParseError("/proc/net/xfrm_stat", raw.strip()[:60], offset, "expected 'NAME COUNT'")
            out[t[0]] = int(t[1])
        offset += len(raw)
    return out
