"""Moving a peer kernel's outbound sequence counter (RFC 4303 s3.3.3 cases near 2^32) over XFRM netlink.

iproute2 has no command for it, so a short python3 program runs in the peer's node: XFRM_MSG_GETAE reads the SA's
replay state (XFRMA_REPLAY_ESN_VAL, or XFRMA_REPLAY_VAL for the kernel's legacy state), the output counter is set
(oseq, and oseq_hi for the ESN form), and XFRM_MSG_NEWAE with NLM_F_REPLACE writes it back. `set_oseq` returns the
kernel's answer; a kernel that refuses raises UnsupportedFeature naming the message and its errno.
"""
from __future__ import annotations

from typing import Any

from harness.errors import LabError, UnsupportedFeature

# argv: daddr saddr spi(hex) proto(50|51) seq(64-bit, decimal); prints "ok esn|legacy" or "refused STEP errno"
PROGRAM = r"""
import os, socket, struct, sys
daddr, saddr, spi, proto, seq = sys.argv[1], sys.argv[2], int(sys.argv[3], 16), int(sys.argv[4]), int(sys.argv[5])
fam = socket.AF_INET6 if ":" in daddr else socket.AF_INET
def addr(a):
    return socket.inet_pton(fam, a).ljust(16, b"\0")
GETAE, NEWAE, REPLAY_VAL, REPLAY_ESN_VAL = 0x1F, 0x1E, 10, 23
ae = addr(daddr) + struct.pack("!I", spi) + struct.pack("=HBx", fam, proto) + addr(saddr) + struct.pack("=II", 3, 0)
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 6)
s.bind((0, 0))
def talk(kind, flags, body):
    s.send(struct.pack("=IHHII", 16 + len(body), kind, flags, 1, 0) + body)
    msg = s.recv(65536)
    length, typ = struct.unpack_from("=IH", msg)
    if typ == 2:
        err = struct.unpack_from("=i", msg, 16)[0]
        return err, b""
    return 0, msg[16:length]
err, body = talk(GETAE, 1, ae)
if err:
    print("refused XFRM_MSG_GETAE", -err, os.strerror(-err)); sys.exit(0)
off, attr = 48, None
while off + 4 <= len(body):
    alen, atype = struct.unpack_from("=HH", body, off)
    if atype & 0x3FFF in (REPLAY_VAL, REPLAY_ESN_VAL):
        attr = (atype & 0x3FFF, bytearray(body[off + 4:off + alen]))
    off += (alen + 3) & ~3
if attr is None:
    print("refused XFRM_MSG_GETAE 0 no replay attribute"); sys.exit(0)
atype, val = attr
if atype == REPLAY_ESN_VAL:
    struct.pack_into("=I", val, 4, seq & 0xFFFFFFFF)
    struct.pack_into("=I", val, 12, seq >> 32)
else:
    struct.pack_into("=I", val, 0, seq & 0xFFFFFFFF)
a = struct.pack("=HH", 4 + len(val), atype) + bytes(val)
err, _ = talk(NEWAE, 1 | 4 | 0x100, ae + a + b"\0" * (-len(a) % 4))
if err:
    print("refused XFRM_MSG_NEWAE", -err, os.strerror(-err)); sys.exit(0)
print("ok", "esn" if atype == REPLAY_ESN_VAL else "legacy")
"""


def set_oseq(adapter: Any, daddr: str, saddr: str, spi: int, proto: str, seq: int) -> str:
    """Set the output sequence counter of the node's SA (the next packet carries seq + 1); "esn" or "legacy", the
    kernel replay state's form. UnsupportedFeature if the kernel refuses, LabError if the program cannot run."""
    out = adapter.run(["python3", "-c", PROGRAM, daddr, saddr, f"{spi:x}", "50" if proto.lower() == "esp" else "51",
                       str(seq)]).strip()
    if out.startswith("ok "):
        return out.split()[1]
    if out.startswith("refused "):
        raise UnsupportedFeature(f"the peer's kernel refused to move SA 0x{spi:08x}'s output counter: {out[8:]}")
    raise LabError(f"moving SA 0x{spi:08x}'s output counter: unexpected output {out!r}")
