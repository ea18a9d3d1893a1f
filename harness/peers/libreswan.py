"""Libreswan adapter: pluto in the node, configured by ipsec.conf/ipsec.secrets from templates, driven by `ipsec whack`.

Start (no systemd in the nodes): `ipsec initnss`, `ipsec pluto --config /etc/ipsec.conf --nofork --stderrlog`
spawned by the node's agent, wait for whack, `ipsec whack --listen`. A connection: the rendered files are
written, `ipsec addconn --config /etc/ipsec.conf NAME` and `ipsec whack --rereadsecrets`. `ipsec auto --up`
exits 0 on failure, so state is always read back (`--showstates`, `--trafficstatus`, `--status`) and
joined with `ip -s xfrm state` by SPI for packet counters and keys. Libreswan 4.x and 5.x differ in a
few words (rekey of a Child SA: --rekey-ipsec vs --rekey-child; dpdaction= gone in 5; auto=route vs ondemand).
Certificate authentication: authby= follows auth.signature where it is set (rsa-sha2_N: RSASSA-PSS, ecdsa-sha2_N, rsa-sha1:
method 1), else this end's key (rsasig for RSA, ecdsa for ECDSA P-256/384/521, the same words in 4.x and 5.x); authby= is
symmetric, so the remote end is expected to sign with the same kind of key.
"""
from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass, field

from harness.errors import ConfigError, LabError, NotEstablished, ParseError, UnsupportedFeature
from harness.peers.algorithms import Algorithms, parse_whack_status
from harness.peers.base import ChildSaRecord, IkeSaRecord, NodeBase, child_serial, join_kernel
from harness.ike.ts import PROTOCOLS, protoport_suffix
from harness.peers.connection import Connection, Identity, pem_certificates, selector_network, selector_protoport
from harness.peers.libreswan_proposals import translate
from harness.esp.keepalive import LAB_INTERVAL
from harness.peers.templates import render
from harness.peers.xfrm import parse_xfrm_state

# pluto's tools by path: the `ipsec` wrapper script costs ~0.2 s a call under UML (measured: whack --status 0.28 s
# through it, 0.09 s direct; an exec round trip is 0.05-0.06 s), and list_sas alone makes three whack calls
WHACK = "/usr/libexec/ipsec/whack"
OUTPUT_SEPARATOR = "@@ipsi-next-output@@"  # between the outputs of several commands run in one round trip
ADDCONN = "/usr/libexec/ipsec/addconn"
CONF_PATH = "/etc/ipsec.conf"
SECRETS_PATH = "/etc/ipsec.secrets"
LOG_PATH = "/var/log/pluto.log"
STDERR_PATH = "/var/log/pluto.stderr"
NSS_DIR = "/var/lib/ipsec/nss"
_CHAIN_MAX = 4  # intermediate CA certificates one end may send (ipsi-chain-0..3 in NSS)


def lsw_identity(ident: Identity | None, addr: str) -> str:
    """A Libreswan leftid=/rightid= value (@fqdn, user@domain, @#hex keyid, a quoted DN, an address)."""
    if ident is None:
        return addr
    return {"ipv4": ident.value, "ipv6": ident.value, "fqdn": "@" + ident.value, "email": ident.value,
            "keyid": "@#" + ident.value, "dn": f'"{ident.value}"'}[ident.type]


def _dpd(c: Connection, major: int) -> list[str]:
    if not c.dpd.delay:
        return []
    out = [f"dpddelay={c.dpd.delay}s"]
    if major < 5:
        if c.dpd.action == "none":
            raise UnsupportedFeature(f"libreswan {major}.x: dpd.action none (Libreswan always acts on a dead peer)")
        out.append("dpdaction=" + {"clear": "clear", "trap": "hold", "restart": "restart"}[c.dpd.action])
    elif c.dpd.action != "clear":
        raise UnsupportedFeature(f"libreswan {major}.x: dpd.action {c.dpd.action} (5.x has no dpdaction=: a dead peer's SAs are cleared)")
    return out


def _lifetimes(c: Connection) -> list[str]:
    """ikelifetime/salifetime/rekeymargin/ipsec-max-*: Libreswan rekeys `rekeymargin` before the lifetime ends."""
    lt, out = c.lifetimes, []
    if lt.ike_rekey_time is not None and lt.ike_reauth_time is not None:
        raise UnsupportedFeature("libreswan: both lifetimes.ike_rekey_time and ike_reauth_time (one IKE lifetime, "
                                 "ended by rekey or by reauth=yes)")
    ike_time = lt.ike_rekey_time if lt.ike_rekey_time is not None else lt.ike_reauth_time
    child_rekey = lt.child_rekey_time
    child_life = lt.child_life_time if lt.child_life_time is not None else (
        None if child_rekey is None else child_rekey + max(1, child_rekey // 10))
    margin = (child_life - child_rekey) if (child_rekey is not None and child_life is not None) else None
    if margin is not None and margin <= 0:
        raise ConfigError("lifetimes.child_life_time must exceed child_rekey_time")
    if margin is not None:
        out.append(f"rekeymargin={margin}s")
    if lt.child_rand_time is not None:
        if margin is None:
            raise ConfigError("lifetimes.child_rand_time needs child_rekey_time (Libreswan's rekeyfuzz is a share of "
                              "rekeymargin)")
        # pluto rekeys at salifetime - rekeymargin * (1 + rekeyfuzz * random): up to rekeyfuzz% of the margin early
        out.append(f"rekeyfuzz={round(100 * lt.child_rand_time / margin)}%")  # replaces the template's 0%
    if child_life is not None:
        out.append(f"salifetime={child_life}s")
    if ike_time is not None:
        out.append(f"ikelifetime={ike_time + (margin or 0)}s")
    if lt.ike_reauth_time is not None:
        out.append("reauth=yes")
    max_bytes = lt.child_life_bytes if lt.child_life_bytes is not None else lt.child_rekey_bytes
    max_packets = lt.child_life_packets if lt.child_life_packets is not None else lt.child_rekey_packets
    if max_bytes is not None:
        out.append(f"ipsec-max-bytes={max_bytes}")
    if max_packets is not None:
        out.append(f"ipsec-max-packets={max_packets}")
    return out


# the curves Libreswan 4.10 and 5.2 sign and verify with (ECDSA with SHA-2, RFC 7427; authby=ecdsa in both).
# Measured under UML, both versions: the default authby=rsasig,ecdsa signs with RSA even when this end's key is
# ECDSA ("NSS: RSA DSS sign function failed"), so the policy must follow the key; being symmetric, it also
# refuses a remote end signing with the other kind of key ("peer authentication requires policy ECDSA").
_ECDSA_CURVES = ("secp256r1", "secp384r1", "secp521r1")


def signature_policy(c: Connection, major: int = 4) -> str:
    """Libreswan's authby= for this end's certificate: its auth.signature scheme, else by its key (rsasig or ecdsa)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        key = x509.load_pem_x509_certificate((c.auth.cert_pem or "").encode()).public_key()
    except ValueError as e:
        raise ConfigError(f"connection {c.name}: auth.cert_pem: {e}") from None
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _ECDSA_CURVES:
        kind = "ecdsa"
    elif isinstance(key, rsa.RSAPublicKey):
        kind = "rsa"
    else:
        what = f"ECDSA on {key.curve.name}" if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__.removesuffix("PublicKey")
        raise UnsupportedFeature(f"libreswan: certificate authentication with a {what} key (pluto signs with RSA or ECDSA "
                                 f"P-256/384/521 only: 4.10 and 5.2 have no EdDSA, RFC 8420, anywhere in the binary)")
    scheme = c.auth.signature
    if scheme is None:
        return "rsasig" if kind == "rsa" else "ecdsa"
    if scheme == "legacy":  # RFC 7296 method 1; for ECDSA pluto falls back to an RFC 4754 method by itself
        return "rsa-sha1" if kind == "rsa" else "ecdsa"
    family, _, digest = scheme.partition("-")
    if family == "pkcs1":
        raise UnsupportedFeature("libreswan: RFC 7427 RSA with PKCS#1 v1.5 (ipsec.conf(5) authby: PKCS#1 v1.5 only as "
                                 "rsa-sha1, the RFC 7296 method 1; its RFC 7427 RSA signatures are RSASSA-PSS)")
    bits = digest.removeprefix("sha")
    if family == "pss":
        return "rsa-sha2" if major < 5 and bits == "256" else f"rsa-sha2_{bits}"
    # 4.10 knows authby=ecdsa only (any SHA-2 hash): the hash then follows the other end's SIGNATURE_HASH_ALGORITHMS
    return "ecdsa" if major < 5 else f"ecdsa-sha2_{bits}"


def _subnets(c: Connection, major: int) -> list[str]:
    """left/rightsubnet= (and 4.x's left/rightprotoport=) for c's selectors: 5.x takes a comma separated list, each
    PREFIX[/PROTOCOL[/PORT]]; 4.x one prefix per side and one protocol/port (ipsec.conf(5) leftsubnet, leftprotoport)."""
    out = []
    for side, ts, given in (("left", c.local_selectors(), c.local_ts), ("right", c.remote_selectors(), c.remote_ts)):
        if side == "right" and c.mode == "transport" and not given and c.remote_behind_nat:
            # RFC 7296 s2.23.1: the remote end's TS names the address it has behind its NAT, not right=; pluto 4.10 and
            # 5.2 refuse it (TS_UNACCEPTABLE) unless rightsubnet= names it (vhost:%priv is IKEv1 only in 4.10's addconn)
            out.append(f"rightsubnet={c.remote_behind_nat}/{32 if ':' not in c.remote_behind_nat else 128}")
            continue
        if not (c.mode == "tunnel" or given):
            continue
        parts = []
        for t in ts:
            pp = selector_protoport(t)
            if "-" in pp:
                raise UnsupportedFeature(f"libreswan: a port range in a selector ({t}): one port or all (ipsec.conf(5))")
            parts.append((str(selector_network(t)), pp))
        if major < 5:
            if len(parts) > 1:
                raise UnsupportedFeature(f"libreswan {major}.x: {len(parts)} selectors on one side (several and "
                                         "protocol/port in leftsubnet= came with 5.0, ipsec.conf(5))")
            out.append(f"{side}subnet={parts[0][0]}")
            if parts[0][1]:
                out.append(f"{side}protoport={parts[0][1]}")
        else:
            out.append(f"{side}subnet=" + ",".join(f"{n}/{pp}" if pp else n for n, pp in parts))
    return out


def ca_dn(pem: str | None) -> str:
    """A certificate's subject as Libreswan writes a DN: its RDNs in DER order ("O=ipsec-interop, CN=root")."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate((pem or "").encode())
    except ValueError as e:
        raise ConfigError(f"auth.ca_pem: {e}") from None
    return ", ".join(rdn.rfc4514_string() for rdn in cert.subject.rdns)


def ipsec_conf(c: Connection, major: int = 4, plutodebug: str = "base", cert_nickname: str = "ipsi-local") -> str:
    """The node's ipsec.conf for one connection (Libreswan `major` 4 or 5)."""
    ike = translate(c.ike_proposals, "ike")
    child = translate(c.child_proposals, c.protocol)
    if c.fragmentation == "accept":
        raise UnsupportedFeature("libreswan: fragmentation accept (only yes, no, force)")
    if c.childless != "allow":
        raise UnsupportedFeature(f"libreswan: childless {c.childless} (RFC 6023): ipsec.conf(5) of 4.10 and 5.2 has no "
                                 f"such option; pluto always announces CHILDLESS_IKEV2_SUPPORTED and accepts a childless "
                                 f"IKE_AUTH")
    options = _subnets(c, major)
    if c.mode == "tunnel" or c.local_ts or c.remote_ts:
        options.append("narrowing=yes")  # pluto's default refuses selectors other than its own (RFC 7296 s2.9 lets it narrow)
    if c.auth.method == "pubkey" and c.auth.chain_pem:
        # sendca's default is none; rightca=%same would ask for our own issuer, an intermediate, of the peer's chain
        options += [f"leftcert={cert_nickname}", "leftsendcert=always", "sendca=all", f'rightca="{ca_dn(c.auth.ca_pem)}"']
    elif c.auth.method == "pubkey":
        options += [f"leftcert={cert_nickname}", "leftsendcert=always", "rightca=%same"]
    options += _lifetimes(c) + _dpd(c, major)
    if c.replay_window is not None:
        options.append(f"replay-window={c.replay_window}")
    auto = {"initiator": "start", "responder": "add", "trap": "route" if major < 5 else "ondemand"}[c.role]
    text = render("libreswan", "ipsec.conf", {
        "ikev2": "ikev2=insist" if major < 5 else "keyexchange=ikev2", "log_path": LOG_PATH, "plutodebug": plutodebug, "name": c.name, "local_addr": c.local_addr,
        "remote_addr": c.remote_addr,
        "local_id": "%fromcert" if c.auth.method == "pubkey" and c.local_id is None else lsw_identity(c.local_id, c.local_addr),
        "remote_id": "%fromcert" if c.auth.method == "pubkey" and c.remote_id is None else lsw_identity(c.remote_id, c.remote_addr),
        "authby": "secret" if c.auth.method == "psk" else signature_policy(c, major), "ike": ike.value, "protocol": c.protocol,
        "child_proposals": child.value, "pfs": "yes" if child.pfs else "no", "esn": child.esn, "mode": c.mode,
        "rekey": "yes" if c.rekey else "no", "encapsulation": "yes" if c.encap == "force" else "auto",
        "fragmentation": c.fragmentation, "auto": auto,
        "options": "".join(f"\t{o}\n" for o in options if not o.startswith("rekeyfuzz=")).rstrip("\n")})
    fuzz = [o for o in options if o.startswith("rekeyfuzz=")]
    return text.replace("\trekeyfuzz=0%\n", f"\t{fuzz[0]}\n") if fuzz else text


def ipsec_secrets(c: Connection) -> str:
    """The node's ipsec.secrets: the PSK for the identity pair (certificates live in the NSS database)."""
    if c.auth.method != "psk":
        return "# certificate authentication: the private key is in the NSS database\n"
    assert c.auth.psk is not None
    if '"' in c.auth.psk or "\n" in c.auth.psk:
        raise UnsupportedFeature('libreswan: a PSK containing \'"\' or a newline')
    return render("libreswan", "ipsec.secrets", {"local_id": lsw_identity(c.local_id, c.local_addr),
                                                 "remote_id": lsw_identity(c.remote_id, c.remote_addr), "psk": c.auth.psk})


# -- parsers of whack output ----------------------------------------------------------------------
_CODE = re.compile(r"^\d{3} ")
_STATE = re.compile(r'^#(\d+): "([^"]+)"(\[\d+\])?(?:[^ ]*)?(?: [0-9a-f.:]+(?::\d+)?)? (?:STATE_)?(?:V2_)?([A-Z0-9_]+) \(([^)]*)\);(.*)$')
_SPIS = re.compile(r'^#(\d+): "([^"]+)"(\[\d+\])?(?:[^ ]*)?(?: [0-9a-f.:]+(?::\d+)?)? ((?:(?:esp|ah|tun|comp)[.:][0-9a-f]+@\S+ ?)+)(?:ref=\S+ refhim=\S+ )?(?:Traffic: (.*))?$')  # IPv4: esp.SPI@addr, IPv6: esp:SPI@addr
_TRAFFIC = re.compile(r'^#(\d+): "([^"]+)"(\[\d+\])?[^,]*, type=(\w+), add_time=(\d+),(.*)$')
_ALGS = re.compile(r'^"([^"]+)"(\[\d+\])?[^:]*:\s+(IKEv2|IKE|ESP|AH) algorithms? newest: (.+)$')


@dataclass
class LswState:
    """One state of `ipsec whack --showstates`: number, connection, state name, its attributes and SPIs."""

    serial: int
    conn: str
    name: str
    story: str
    attrs: list[str] = field(default_factory=list)
    parent: int | None = None        # Child SA: the IKE SA's serial
    spis: list[tuple[str, int, str]] = field(default_factory=list)  # (proto, spi, address)
    traffic: dict[str, str] = field(default_factory=dict)


def _lines(text: str) -> list[tuple[int, str]]:
    out, offset = [], 0
    for raw in text.splitlines(keepends=True):
        line = _CODE.sub("", raw.rstrip("\n"))
        if line.strip():
            out.append((offset, line.strip()))
        offset += len(raw)
    return out


def parse_showstates(text: str) -> list[LswState]:
    """Parse `ipsec whack --showstates` (Libreswan 4.x with or without numeric prefixes, 5.x)."""
    states: dict[int, LswState] = {}
    for offset, line in _lines(text):
        if not line.startswith("#"):
            continue
        m = _STATE.match(line)
        if m:
            attrs = [a.strip() for a in m.group(6).split(";") if a.strip()]
            st = LswState(int(m.group(1)), m.group(2), m.group(4), m.group(5), attrs)
            for a in attrs:
                pm = re.match(r"^(?:IKE SA|isakmp)#? ?#(\d+)$", a) or re.match(r"^IKE SA #(\d+)$", a)
                if pm:
                    st.parent = int(pm.group(1))
            states[st.serial] = st
            continue
        if re.match(r'^#\d+: pending ', line):  # a Child SA queued behind its IKE SA (initiator, IKE_AUTH in flight)
            continue
        m = _SPIS.match(line)
        if m:
            st = states.get(int(m.group(1)))
            if st is None:
                raise ParseError("ipsec whack --showstates", line[:60], offset, "SPI line before its state line")
            for tok in m.group(4).split():
                proto, rest = re.split(r"[.:]", tok, maxsplit=1)
                spi, addr = rest.split("@", 1)
                st.spis.append((proto, int(spi, 16), addr))
            st.traffic = dict(kv.split("=", 1) for kv in (m.group(5) or "").split() if "=" in kv)
            continue
        raise ParseError("ipsec whack --showstates", line[:60], offset, "neither a state line nor an SPI line")
    return list(states.values())


def parse_trafficstatus(text: str) -> dict[int, dict[str, str]]:
    """Parse `ipsec whack --trafficstatus`: {Child SA serial: {conn, type, add_time, inBytes, outBytes, ...}}."""
    out = {}
    for offset, line in _lines(text):
        m = _TRAFFIC.match(line)
        if not m:
            raise ParseError("ipsec whack --trafficstatus", line[:60], offset, "expected '#N: \"conn\"..., type=..., add_time=...'")
        d = {"conn": m.group(2), "type": m.group(4), "add_time": m.group(5)}
        for kv in re.findall(r"(\w+)=('[^']*'|[^,]+)", m.group(6)):
            d[kv[0]] = kv[1].strip().strip("'")
        out[int(m.group(1))] = d
    return out


def parse_status_algorithms(text: str) -> dict[str, dict[str, str]]:
    """The negotiated algorithms from `ipsec whack --status`: {conn: {"IKE": "AES_GCM_16_128-HMAC_SHA2_256-DH19", "ESP": ...}}."""
    out: dict[str, dict[str, str]] = {}
    for _, line in _lines(text):
        m = _ALGS.match(line)
        if m:
            kind = "IKE" if m.group(3).startswith("IKE") else m.group(3)
            out.setdefault(m.group(1), {})[kind] = m.group(4).strip()
    return out


# the responder's error notify as pluto logs it (4.x and 5.x): unauthenticated in IKE_SA_INIT (pluto ignores it and
# retransmits, RFC 7296 s2.21.1) or authenticated in IKE_AUTH
_LOG_REFUSED = re.compile(r'^.*?"([^"]+)"(?:\[\d+\])?(?: [0-9a-f.:]+)? #\d+: (?:(?:ignoring|dropping unexpected) IKE_SA_INIT (?:response|message) containing ([A-Z0-9_]+) notification'
                          r'|IKE SA authentication request rejected by peer: ([A-Z0-9_]+)'
                          r'|IKE_AUTH response rejected Child SA with ([A-Z0-9_]+)).*$', re.MULTILINE)


def refusal_in_log(text: str, name: str) -> tuple[str, str] | None:
    """The first error notify pluto's log shows the responder answered connection name with, and that line."""
    for m in _LOG_REFUSED.finditer(text):
        if m.group(1) == name:
            return m.group(2) or m.group(3) or m.group(4), m.group(0).strip()
    return None


# the initiator's own fatal error while it handles the IKE_AUTH response (4.x and 5.x state names)
_LOG_I_FATAL = re.compile(r'^.*?"([^"]+)"(?:\[\d+\])?(?: [0-9a-f.:]+)? #(\d+): encountered fatal error in state (?:STATE_V2_PARENT_I2|IKE_AUTH_I)\s*$',
                          re.MULTILINE)


_LOG_I_CHILD_REJECTED = re.compile(r'^.*?"([^"]+)"(?:\[\d+\])?(?: [0-9a-f.:]+)? #\d+: (?:IKE SA established but initiator rejected '
                                   r'Child SA response|policy dictates \w+ Mode, but peer requested \w+ Mode)\s*$', re.MULTILINE)


def own_child_refusal_in_log(text: str, name: str) -> str | None:
    """The line where pluto, as initiator of connection name, rejected the responder's Child SA itself (a mode its
    policy does not allow: it deletes the Child SA, RFC 7296 s1.3.1), or None."""
    return next((m.group(0).strip() for m in _LOG_I_CHILD_REJECTED.finditer(text) if m.group(1) == name), None)

# a signature that does not verify (5.2, measured): '"case" #1: authentication failed: using ECDSA with SHA2_256 for
# '198.18.0.2' tried peer: ...' then 'deleting IKE SA (IKE_AUTH_I) ... and sending notification' (4.10: 'deleting state
# (STATE_V2_PARENT_I2)'), no fatal error line
_LOG_I_AUTH = re.compile(r'^.*?"([^"]+)"(?:\[\d+\])?(?: [0-9a-f.:]+)? #(\d+): authentication failed: .*\n.*?#\2: deleting (?:IKE SA|state) '
                         r'\((?:STATE_V2_PARENT_I2|IKE_AUTH_I)\).*$', re.MULTILINE)


def own_refusal_in_log(text: str, name: str) -> str | None:
    """Why pluto, as initiator of connection name, itself refused the IKE_AUTH response (an untrusted certificate,
    a signature that does not verify): its log lines for that IKE SA up to the fatal error; None if there is none or
    the responder refused (refusal_in_log)."""
    for m in [*_LOG_I_FATAL.finditer(text), *_LOG_I_AUTH.finditer(text)]:
        if m.group(1) != name:
            continue
        tag = re.compile(rf'"{re.escape(name)}"(?:\[\d+\])?(?: [0-9a-f.:]+)? #{m.group(2)}: ')
        lines = [ln.strip() for ln in text[:m.end()].splitlines() if tag.search(ln) and " | " not in ln]
        if not any("rejected by peer" in ln for ln in lines):
            return "\n".join(lines[-4:])
    return None


_LOG_IKE = re.compile(r'"([^"]+)"(?:\[\d+\])?(?: [0-9a-f.:]+)? #(\d+): (initiator|responder) established IKE SA;(.*)$')
# PSK: "... using authby=secret and ID_IPV4_ADDR '198.18.0.4'"; certificates: "... using peer certificate '198.18.0.3' issued by CA '...'"
_LOG_PEER_ID = re.compile(r"(?: and (ID_\S+)| peer certificate) '([^']*)'")
_LOG_CHILD = re.compile(r'"([^"]+)"(?:\[\d+\])?(?: [0-9a-f.:]+)? #(\d+): (initiator|responder) established Child SA using #(\d+); IPsec (\w+) '
                        r'((?:\[[^\]]*\][ ->]*)+)')
# 4.x: [198.18.0.3-198.18.0.3:40001-40001 17] -> [...] (range:ports protocol); 5.x: one [L===R] per selector pair, each
# side a prefix with /PROTOCOL/PORT when it has them ("198.18.0.3/32/UDP/40001", port 0: any)
_LOG_TS4 = re.compile(r"\[([^\]:]+):(\d+)-(\d+) (\d+)\] -> \[([^\]:]+):(\d+)-(\d+) (\d+)\]")
_LOG_TS5 = re.compile(r"\[([^\]=]+)===([^\]]+)\]")


def _range_to_prefixes(text: str) -> list[str]:
    """'198.18.0.3-198.18.0.3' -> ['198.18.0.3/32'] (Libreswan logs selectors as address ranges)."""
    first, _, last = text.partition("-")
    try:
        return [str(n) for n in ipaddress.summarize_address_range(ipaddress.ip_address(first), ipaddress.ip_address(last or first))]
    except (ValueError, TypeError):
        return [text]


def _suffixed(prefixes: list[str], proto: int, lo: int, hi: int) -> list[str]:
    return [p + protoport_suffix(proto, lo, hi) for p in prefixes]


def _logged_selectors(text: str) -> tuple[list[str], list[str]]:
    """(local, remote) selectors of a Child SA as pluto logs them (_LOG_TS4, _LOG_TS5), in the project's form
    ("198.18.0.3/32[17/40001]")."""
    m = _LOG_TS4.search(text)
    if m:
        g = m.groups()
        return (_suffixed(_range_to_prefixes(g[0]), int(g[3]), int(g[1]), int(g[2])),
                _suffixed(_range_to_prefixes(g[4]), int(g[7]), int(g[5]), int(g[6])))
    local: list[str] = []
    remote: list[str] = []
    for pair in _LOG_TS5.findall(text):
        for side, out in zip(pair, (local, remote)):
            prefix, _, rest = side.strip().partition("/")
            bits, _, protoport = rest.partition("/")
            proto, _, port = protoport.partition("/")
            number = PROTOCOLS.get(proto.lower(), int(proto) if proto.isdigit() else 0) if proto else 0
            p = int(port) if port.isdigit() else 0
            for t in _suffixed([f"{prefix}/{bits}" if bits else prefix], number, p, p if p else 65535):
                if t not in out:
                    out.append(t)
    return local, remote


def parse_pluto_log(text: str) -> dict[int, dict[str, object]]:
    """What pluto's log tells and whack does not: per state number its role, the peer's ID (IKE SA) or selectors (Child SA)."""
    out: dict[int, dict[str, object]] = {}
    for line in text.splitlines():
        m = _LOG_IKE.search(line)
        if m:
            peer = _LOG_PEER_ID.search(m.group(4))
            out[int(m.group(2))] = {"conn": m.group(1), "role": m.group(3),
                                    "remote_id_type": (peer.group(1) or "certificate") if peer else "",
                                    "remote_id": peer.group(2) if peer else ""}
            continue
        m = _LOG_CHILD.search(line)
        if m:
            local, remote = _logged_selectors(m.group(6))
            out[int(m.group(2))] = {"conn": m.group(1), "role": m.group(3), "parent": int(m.group(4)), "mode": m.group(5),
                                    "local_ts": local, "remote_ts": remote}
    return out


def _split_ike(alg: str) -> tuple[str | None, str | None, str | None, str | None]:
    """(encr, integ, prf, ke) of a Libreswan IKE algorithm line 'ENCR-PRF[-INTEG]-DH' or 'ENCR-INTEG-PRF-DH'."""
    parts = alg.split(";")[0].split("-")
    if len(parts) == 3:
        return parts[0], None, parts[1], parts[2]
    if len(parts) == 4:
        return parts[0], parts[1], parts[2], parts[3]
    return alg, None, None, None


def records(showstates: str, traffic: str, status: str, local_addr: str | None = None, log: str = "") -> list[IkeSaRecord]:
    """IKE SA records (with Child SAs) from the three whack outputs (and pluto's log for roles, peer IDs, selectors)."""
    states = parse_showstates(showstates)
    logged = parse_pluto_log(log)
    tstat = parse_trafficstatus(traffic)
    algs = parse_status_algorithms(status)
    ikes: dict[int, IkeSaRecord] = {}
    for st in states:
        if st.parent is None and "IKE" in st.name:
            a = algs.get(st.conn, {})
            encr, integ, prf, ke = _split_ike(a["IKE"]) if "IKE" in a else (None, None, None, None)
            ikes[st.serial] = IkeSaRecord(name=st.conn, state=st.name, local_addr=local_addr or "", remote_addr="",
                                          encr=encr, integ=integ, prf=prf, ke=ke, serial=st.serial,
                                          raw={"story": st.story, "attrs": st.attrs})
            info = logged.get(st.serial, {})
            if "remote_id" in info:  # a serial logged as an IKE SA (a line for a Child SA of that number is not)
                ikes[st.serial].initiator = info["role"] == "initiator"
                ikes[st.serial].remote_id = str(info["remote_id"])
    for st in states:
        if st.parent is None or not st.spis:
            continue
        t = tstat.get(st.serial, {})
        proto = next((p for p, _, _ in st.spis if p in ("esp", "ah")), "esp")
        addrs = [a for p, _, a in st.spis if p == proto]
        spis = [s for p, s, _ in st.spis if p == proto]
        if len(spis) != 2:
            raise ParseError("ipsec whack --showstates", f"#{st.serial}", 0, f"expected two {proto} SPIs, got {len(spis)}")
        # Libreswan lists the SA towards the peer first (its SPI @ the peer's address), then ours
        out_i = 0 if local_addr is None or addrs[1] == local_addr else 1
        a = algs.get(st.conn, {}).get(proto.upper(), "")
        alg_parts = a.split(";")[0].split("-") if a else []
        child = ChildSaRecord(
            name=st.conn, protocol=proto.upper(), mode="tunnel" if any(p == "tun" for p, _, _ in st.spis) else "transport",
            spi_in=spis[1 - out_i], spi_out=spis[out_i], state=st.name,
            encr=(alg_parts[0] if proto == "esp" and alg_parts else None),
            integ=(alg_parts[-1] if alg_parts and (proto == "ah" or len(alg_parts) > 1) else None),
            bytes_in=int(t.get("inBytes", "0")), bytes_out=int(t.get("outBytes", "0")),
            serial=st.serial, raw={"bytes_from_peer": bool(t), "story": st.story, "attrs": st.attrs, "traffic": t, "algorithms": a})
        if child.integ == "NONE":
            child.integ = None
        info = logged.get(st.serial, {})
        if "local_ts" in info:
            child.local_ts, child.remote_ts = list(info["local_ts"]), list(info["remote_ts"])  # type: ignore[call-overload]
        parent = ikes.get(st.parent or -1)
        if parent is None:
            parent = ikes[st.parent or -1] = IkeSaRecord(name=st.conn, state="(IKE SA not listed)", local_addr=local_addr or "",
                                                         remote_addr="", serial=st.parent)
        parent.children.append(child)
        if addrs:
            parent.remote_addr = addrs[out_i]
    return list(ikes.values())


def tunnel_routes(c: Connection) -> list[str]:
    """The remote selectors of a tunnel that are not the remote gateway itself: each needs a route via the gateway
    (Libreswan's updown script would add it; the adapter runs pluto with leftupdown=%disabled)."""
    if c.mode != "tunnel":
        return []
    gw = ipaddress.ip_address(c.remote_addr)
    return [str(selector_network(ts)) for ts in c.remote_selectors() if gw not in selector_network(ts)]


class LibreswanAdapter(NodeBase):
    """pluto in a runtime node, configured from templates and driven through `ipsec whack` by node.exec."""

    implementation = "libreswan"

    def __init__(self, node: object, plutodebug: str = "base", start_timeout: float = 60.0) -> None:
        super().__init__(node)
        self.plutodebug = plutodebug
        self.start_timeout = start_timeout
        self._version = ""
        self._algorithms: Algorithms | None = None
        self._secrets: str | None = None  # the ipsec.secrets pluto has read
        self._roots: set[str] = set()  # root CAs (PEM) imported since pluto started

    def version(self) -> str:
        """'Libreswan <version>' from `ipsec --version`."""
        if not self._version:
            out = self.run(["ipsec", "--version"]).strip()
            m = re.search(r"Libreswan (?:U)?(\S+)", out)
            if not m:
                raise LabError(f"libreswan: cannot read the version from {out!r}")
            self._version = m.group(1)
        return f"Libreswan {self._version}"

    def major(self) -> int:
        """Libreswan's major version (4 or 5): some keywords and whack options differ."""
        return int(self.version().split()[-1].split(".")[0])

    def start(self) -> None:
        """Initialise NSS, start pluto in the foreground (by the node's agent) and wait until whack answers."""
        if self.pid is not None:
            return
        t0 = time.monotonic()
        self.node.put_file(CONF_PATH, b"config setup\n\tlogfile=" + LOG_PATH.encode() + b"\n")  # type: ignore[attr-defined]
        self.node.put_file(SECRETS_PATH, b"")  # type: ignore[attr-defined]
        self._secrets = ""
        self._roots = set()
        self.run(["mkdir", "-p", NSS_DIR, "/run/pluto", "/var/log"])
        if self.node.exec(["test", "-e", f"{NSS_DIR}/cert9.db"], timeout=10)[0] != 0:  # type: ignore[attr-defined]
            self.run(["ipsec", "initnss", "--nssdir", NSS_DIR], timeout=30)
        self.pid = int(self.node.spawn(["ipsec", "pluto", "--config", CONF_PATH, "--nofork", "--stderrlog",
                                                    "--keep-alive", str(LAB_INTERVAL)],  # type: ignore[attr-defined]
                                       STDERR_PATH))
        deadline = time.monotonic() + self.start_timeout
        while self.node.exec([WHACK, "--briefstatus"], timeout=10)[0] != 0:  # type: ignore[attr-defined]
            if time.monotonic() > deadline:
                raise LabError(f"libreswan on {getattr(self.node, 'name', '?')}: whack gets no answer after "
                               f"{self.start_timeout} s; log tail:\n{self.logs()[-2000:]}")
            time.sleep(0.1)
        self.run([WHACK, "--listen"])
        self.timings["start"] = time.monotonic() - t0

    def algorithms(self) -> Algorithms:
        """pluto's IKE and kernel algorithms from the header of `whack --status` (read once per daemon)."""
        if self._algorithms is None:
            self._algorithms = parse_whack_status(self.run([WHACK, "--status"]))
        return self._algorithms

    def logs(self) -> str:
        """pluto's log file and its stderr."""
        return self.read_logs(LOG_PATH, STDERR_PATH)

    def load(self, connection: Connection) -> None:
        """Write ipsec.conf/ipsec.secrets for the connection, (re)add it and reread the secrets."""
        self.start()
        t0 = time.monotonic()
        c = connection
        if c.auth.method == "pubkey":
            signature_policy(c, self.major())  # UNIMPLEMENTED for a key or scheme pluto cannot sign with, before NSS is touched
            self._fresh_root(c)
            self._import_certificates(c)
        secrets = ipsec_secrets(c)
        steps = [f"cat > {CONF_PATH}"]  # the rendered ipsec.conf comes on stdin: no round trip of its own
        if c.name in self.connections:
            steps.append(f"{{ {WHACK} --delete --name {c.name} || true; }}")
        steps.append(f"{ADDCONN} --config {CONF_PATH} {c.name}")
        # via the gateway where it is on-link; where it is not (behind a NAT router) the node's default route serves
        steps += [f"{{ ip route replace {ts} via {c.remote_addr} 2>/dev/null || true; }}" for ts in tunnel_routes(c)]
        if secrets != self._secrets:  # pluto rereads them only when they changed: one round trip less a case
            self.node.put_file(SECRETS_PATH, secrets.encode(), mode=0o600)  # type: ignore[attr-defined]
            steps.append(f"{WHACK} --rereadsecrets")
        self.run(["sh", "-c", " && ".join(steps)], input=ipsec_conf(c, self.major(), self.plutodebug))  # one round trip
        # into the node for all of them (connection names are [A-Za-z0-9_-] only: nothing to quote)
        self._secrets = secrets
        self.connections[c.name] = c
        self.timings["load"] = time.monotonic() - t0

    def _import_certificates(self, c: Connection) -> None:
        """This end's certificate and key (PKCS#12) and the CA into pluto's NSS database."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.serialization import pkcs12

        assert c.auth.cert_pem and c.auth.key_pem and c.auth.ca_pem
        try:
            cert = x509.load_pem_x509_certificate(c.auth.cert_pem.encode())
            key = serialization.load_pem_private_key(c.auth.key_pem.encode(), None)
        except ValueError as e:
            raise ConfigError(f"connection {c.name}: auth.cert_pem/key_pem: {e}") from None
        p12 = pkcs12.serialize_key_and_certificates(b"ipsi-local", key, cert, None,  # type: ignore[arg-type]
                                                    serialization.BestAvailableEncryption(b"ipsi"))
        self.node.put_file("/run/ipsi-local.p12", p12, mode=0o600)  # type: ignore[attr-defined]
        self.node.put_file("/run/ipsi-ca.pem", c.auth.ca_pem.encode())  # type: ignore[attr-defined]
        # a reloaded connection replaces the previous credentials: two certificates under one nickname are ambiguous
        self.run(["certutil", "-F", "-d", f"sql:{NSS_DIR}", "-n", "ipsi-local"], check=False)
        self.run(["certutil", "-D", "-d", f"sql:{NSS_DIR}", "-n", "ipsi-local"], check=False)
        self.run(["certutil", "-D", "-d", f"sql:{NSS_DIR}", "-n", "ipsi-ca"], check=False)
        self.run(["pk12util", "-d", f"sql:{NSS_DIR}", "-i", "/run/ipsi-local.p12", "-W", "ipsi", "-K", ""])
        self.run(["certutil", "-A", "-d", f"sql:{NSS_DIR}", "-n", "ipsi-ca", "-t", "CT,,", "-a", "-i", "/run/ipsi-ca.pem"])
        # intermediates with no trust of their own (",,"): NSS builds our chain with them, pluto sends them (sendca)
        chain = pem_certificates(c.auth.chain_pem or "")
        if len(chain) > _CHAIN_MAX:
            raise ConfigError(f"connection {c.name}: auth.chain_pem: {len(chain)} certificates, the adapter imports "
                              f"up to {_CHAIN_MAX}")
        steps = [f"{{ certutil -D -d sql:{NSS_DIR} -n ipsi-chain-{i} 2>/dev/null || true; }}" for i in range(_CHAIN_MAX)]
        for i, pem in enumerate(chain):
            self.node.put_file(f"/run/ipsi-chain-{i}.pem", pem.encode())  # type: ignore[attr-defined]
            steps.append(f"certutil -A -d sql:{NSS_DIR} -n ipsi-chain-{i} -t ,, -a -i /run/ipsi-chain-{i}.pem")
        if c.auth.ca_pem not in self._roots:  # 5.x: drop pluto's cache of root CAs (see _fresh_root)
            steps.append(f"{WHACK} --rereadcerts")
            self._roots.add(c.auth.ca_pem)
        self.run(["sh", "-c", " && ".join(steps)])

    def _fresh_root(self, c: Connection) -> None:
        """Make pluto trust c's CA when it is a root it has not seen: pluto caches NSS's root CAs (root_certs.c) from
        a verification until 5 minutes after the last, and a root imported meanwhile stays untrusted
        (SEC_ERROR_UNTRUSTED_ISSUER, measured on 4.10 and 5.2). `whack --rereadcerts` drops that cache in 5.x, not in
        4.x (it only rereads the connections' certificates there): 4.x restarts pluto for such a root."""
        if not self._roots or c.auth.ca_pem in self._roots or self.major() >= 5:
            return
        pid = self.pid
        self.stop()
        deadline = time.monotonic() + self.start_timeout
        while self.node.exec(["kill", "-0", str(pid)], timeout=10)[0] == 0:  # type: ignore[attr-defined]
            if time.monotonic() > deadline:
                raise LabError(f"libreswan: pluto (pid {pid}) still runs {self.start_timeout} s after SIGTERM")
            time.sleep(0.1)
        self.start()

    def unload(self, name: str) -> None:
        """Delete the connection (and its states) from pluto, and the routes its load added."""
        c = self.connections.pop(name, None)
        gone = [f"{{ ip route del {ts} via {c.remote_addr} || true; }}" for ts in tunnel_routes(c)] if c else []
        self.run(["sh", "-c", " && ".join([f"{WHACK} --delete --name {name}", *gone])] if gone else
                 [WHACK, "--delete", "--name", name])

    def initiate(self, name: str, timeout: float = 30.0) -> IkeSaRecord:
        """`ipsec whack --asynchronous --initiate --name NAME`, then read the state back until it is established or
        pluto logs the responder's refusal (NotEstablished with its notify: pluto itself retries for a minute)."""
        t0 = time.monotonic()
        seen = {p: len(self.read_logs(p)) for p in (LOG_PATH, STDERR_PATH)}  # 4.10 logs to stderr, 5.x to the file
        self.run([WHACK, "--asynchronous", "--initiate", "--name", name], timeout=timeout + 5, check=False)
        deadline = time.monotonic() + timeout
        while True:
            for sa in self.list_sas():
                if sa.name == name and sa.established and sa.children:
                    self.timings["initiate"] = time.monotonic() - t0
                    return sa
            text = "\n".join(self.read_logs(p)[n:] for p, n in seen.items())
            refusal = refusal_in_log(text, name)
            if refusal:
                raise NotEstablished(f"libreswan initiate {name}: the responder refused with {refusal[0]} "
                                     f"(pluto: {refusal[1]})", notify=refusal[0])
            own = own_refusal_in_log(text, name) or own_child_refusal_in_log(text, name)
            if own:
                raise NotEstablished(f"libreswan initiate {name}: pluto refused the responder's IKE_AUTH response "
                                     f"or its Child SA itself:\n{own}")
            if time.monotonic() > deadline:
                raise NotEstablished(f"libreswan initiate {name}: no established IKE SA with a Child SA after {timeout} s; "
                               f"log tail:\n{self.logs()[-1500:]}")
            time.sleep(0.2)

    def initiate_ike(self, name: str, timeout: float = 30.0) -> IkeSaRecord:
        """UnsupportedFeature: no ipsec.conf option of 4.10/5.2 makes pluto initiate a childless IKE SA (RFC 6023)."""
        raise UnsupportedFeature("libreswan: initiating a childless IKE SA (RFC 6023): ipsec.conf(5) of 4.10 and 5.2 has "
                                 "no option for it; pluto omits the Child SA from IKE_AUTH only under --impair "
                                 "omit-v2-ike-auth-child or for a labeled-IPsec (sec_label) parent connection")

    def create_child(self, name: str, timeout: float = 30.0) -> None:
        """`whack --initiate` on a connection whose IKE SA stands: pluto creates its Child SA with CREATE_CHILD_SA."""
        self.initiate(name, timeout)

    def terminate(self, name: str, timeout: float = 30.0) -> None:
        """`ipsec whack --asynchronous --terminate --name NAME`: pluto sends the Delete of the IKE SA (and its Child
        SAs) and keeps the connection; the caller waits for the SAs to go (a synchronous whack would hang on pluto's
        retransmissions, about 31 s, where the other end does not answer, hiding that end's logs behind a LabError)."""
        self.run([WHACK, "--asynchronous", "--terminate", "--name", name], timeout=timeout)

    def rekey(self, name: str, what: str = "child") -> None:
        """Rekey the IKE SA (--rekey-ike) or the Child SA (4.x --rekey-ipsec, 5.x --rekey-child), --asynchronous: whack
        returns once pluto has the command (the outcome is read from the ends' states). Measured: 4.10's whack stays
        connected after its rekey is refused (NO_PROPOSAL_CHOSEN) until killed."""
        if what not in ("ike", "child"):
            raise ConfigError(f"rekey: what must be 'ike' or 'child', not {what!r}")
        option = "--rekey-ike" if what == "ike" else ("--rekey-ipsec" if self.major() < 5 else "--rekey-child")
        self.run([WHACK, "--asynchronous", option, "--name", name])

    def demand_cookies(self, on: bool) -> None:
        """`whack --ddos-busy` (pluto answers every new IKE_SA_INIT with a COOKIE, RFC 7296 s2.6) or `--ddos-auto`."""
        self.run([WHACK, "--ddos-busy" if on else "--ddos-auto"])

    def delete_child(self, name: str, spi_in: int, timeout: float = 30.0) -> None:
        """`ipsec whack --asynchronous --deletestate N` for the Child SA state receiving on spi_in (pluto sends its
        Delete; the caller waits for the SAs to go). Measured: 4.10's synchronous whack stayed connected past 30 s when
        pluto dropped the answer to its Delete ('discarding packet received during asynchronous work') while it made a
        Child SA for a rekey request that crossed the Delete."""
        serial = child_serial(self.list_sas(), name, spi_in, "libreswan")
        self.run([WHACK, "--asynchronous", "--deletestate", str(serial)], timeout=timeout)

    def whack_outputs(self, kernel: bool = False) -> tuple[str, ...]:
        """(--showstates, --trafficstatus, --status) as whack prints them, and `ip -s xfrm state` if kernel: one
        round trip to the node (each costs 10-20 ms under UML, and list_sas is what every wait polls)."""
        self.start()
        argv = [[WHACK, "--showstates"], [WHACK, "--trafficstatus"], [WHACK, "--status"]]
        if kernel:
            argv.append(["ip", "-s", "xfrm", "state"])
        script = "; echo '%s'; ".join(" ".join(a) for a in argv) % tuple([OUTPUT_SEPARATOR] * (len(argv) - 1))
        parts = self.run(["sh", "-c", "set -e; " + script]).split(OUTPUT_SEPARATOR + "\n")
        if len(parts) != len(argv):
            raise LabError(f"libreswan: whack outputs: {len(parts)} parts for {len(argv)} commands")
        return tuple(parts)

    def list_sas(self) -> list[IkeSaRecord]:
        """IKE and Child SAs from whack, joined with the kernel's counters and keys by SPI."""
        local = next(iter(self.connections.values())).local_addr if self.connections else None
        showstates, traffic, status, kernel = self.whack_outputs(kernel=True)
        sas = records(showstates, traffic, status, local_addr=local, log=self.logs())
        states = parse_xfrm_state(kernel)
        for sa in sas:
            conn = self.connections.get(sa.name)
            if conn is not None:
                sa.remote_addr = sa.remote_addr or conn.remote_addr
            join_kernel(sa.children, states)
        return sas
