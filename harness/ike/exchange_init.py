"""IKE_SA_INIT and IKE_AUTH, both roles (RFC 7296 s1.2, s2.6 cookies, s1.3 INVALID_KE_PAYLOAD, s2.15 AUTH, s2.23 NAT-D).

Functions take the endpoint (harness.ike.endpoint.IkeEndpoint) as `ep`; they build and read
harness.ike.view.Msg objects and leave bytes to the codec.
"""
from __future__ import annotations

from harness.errors import AuthenticationFailed, ConfigError, IkeError, KeyExchangeError, NoProposalChosen
from harness.ike import child, view
from harness.ike.auth import AuthMethod, HashAlg, Identity, default_signature, psk_auth, scheme_of, \
    scheme_signature, sign_auth, signed_octets, verify_auth, verify_psk
from harness.ike.certs import CERT_X509_SIGNATURE, ca_key_hash, check_peer_cert
from harness.ike.constants import ERROR_NOTIFY_MAX, NOTIFY
from harness.ike.datagram import Datagram
from harness.ike.events import ChildlessIkeSa, CookieDemanded, CookieRetry, IkeSaEstablished, KeRetry, NatDetected
from harness.ike.keys import derive_ike_keys, skeyseed
from harness.ike.natt import cookie_valid, make_cookie, nat_detected, nat_detection_hash
from harness.ike.proposals import Suite, check_chosen, select, without_ke
from harness.ike.sa import Address, IkeSa, Pending, State
from harness.ike.view import IKE_AUTH, IKE_SA_INIT, INFORMATIONAL, Msg, Notify

HALF_OPEN = "half-open on purpose (Bugs.half_open): no IKE_AUTH follows"
OUR_HASHES = (HashAlg.SHA2_256, HashAlg.SHA2_384, HashAlg.SHA2_512, HashAlg.IDENTITY)
NATT_PORT = 4500
# RFC 7296 s2.21.2: the only error notifies an IKE_AUTH response may carry without IDr and AUTH
UNAUTHENTICATED_ERRORS = ("AUTHENTICATION_FAILED", "INVALID_SYNTAX", "UNSUPPORTED_CRITICAL_PAYLOAD")
# RFC 7296 s2.21.2: in IKE_AUTH these (with AUTHENTICATION_FAILED) leave no IKE SA, without a Delete payload
IKE_SA_ENDING = ("INVALID_SYNTAX", "UNSUPPORTED_CRITICAL_PAYLOAD")


def _nonce(ep) -> bytes:
    n = ep.config.bugs.nonce_length
    return ep.rng(n if n is not None else ep.config.nonce_size)


def _ke_payload(ep, group_id: int, priv) -> tuple[int, bytes]:
    """Our KE payload, bent by the Bugs where asked (wrong group, invalid value)."""
    bugs = ep.config.bugs
    data = priv.public
    if bugs.bad_ke_data:
        data = bytes(len(data))  # zero: not a valid MODP/ECP public value
    if bugs.ke_group_mismatch is not None:
        return bugs.ke_group_mismatch, data
    return group_id, data


def _natd(ep, msg: Msg, local: Address, remote: Address) -> None:
    bugs = ep.config.bugs
    if bugs.skip_natd:
        return
    src = ("198.18.255.254", 1) if bugs.fake_natd else local
    msg.notifies.append(Notify("NAT_DETECTION_SOURCE_IP", nat_detection_hash(msg.spi_i, msg.spi_r, *src)))
    msg.notifies.append(Notify("NAT_DETECTION_DESTINATION_IP", nat_detection_hash(msg.spi_i, msg.spi_r, *remote)))


def _capabilities(ep, msg: Msg) -> None:
    if ep.config.rfc7427:
        msg.notifies.append(Notify("SIGNATURE_HASH_ALGORITHMS", b"".join(h.to_bytes(2, "big") for h in _announced(ep))))
    if ep.config.fragmentation:
        msg.notifies.append(Notify("IKEV2_FRAGMENTATION_SUPPORTED"))
    if ep.config.childless != "never":
        msg.notifies.append(Notify("CHILDLESS_IKEV2_SUPPORTED"))  # RFC 6023 s3


def _announced(ep) -> tuple[int, ...]:
    """The hashes we announce in SIGNATURE_HASH_ALGORITHMS and accept in a peer's RFC 7427 signature (s4)."""
    if not ep.config.rfc7427:
        return ()
    return OUR_HASHES if ep.config.signature_hashes is None else ep.config.signature_hashes


def _read_capabilities(sa: IkeSa, msg: Msg) -> None:
    n = msg.notify("SIGNATURE_HASH_ALGORITHMS")
    if n is not None:
        sa.peer_hashes = frozenset(int.from_bytes(n.data[i:i + 2], "big") for i in range(0, len(n.data) - 1, 2))
    sa.peer_fragmentation = msg.notify("IKEV2_FRAGMENTATION_SUPPORTED") is not None
    sa.peer_childless = msg.notify("CHILDLESS_IKEV2_SUPPORTED") is not None


def _check_nat(ep, sa: IkeSa, msg: Msg, local: Address, remote: Address) -> None:
    """RFC 7296 s2.23: compare the peer's NAT-D hashes with the addresses this message really used."""
    srcs = [n.data for n in msg.notifies_of("NAT_DETECTION_SOURCE_IP")]
    dsts = [n.data for n in msg.notifies_of("NAT_DETECTION_DESTINATION_IP")]
    if not srcs and not dsts:
        return
    sa.nat_remote = nat_detected(msg.spi_i, msg.spi_r, remote[0], remote[1], srcs)
    # faking our NAT-D hash forces UDP encapsulation: we then act as an end behind a NAT (port 4500, ESP in UDP)
    sa.nat_local = ep.config.bugs.fake_natd or nat_detected(msg.spi_i, msg.spi_r, local[0], local[1], dsts)
    if sa.nat_local or sa.nat_remote:
        ep.events.append(NatDetected(sa.nat_local, sa.nat_remote))


# ---- initiator: IKE_SA_INIT ----------------------------------------------------------------------

def start(ep, remote: Address, childless: bool = False) -> list:
    """Create an initiator IKE SA and send its IKE_SA_INIT request; childless (or config childless force): its
    IKE_AUTH will carry no Child SA (RFC 6023)."""
    spi_i = ep.rng(8)
    sa = ep.new_sa(True, spi_i, bytes(8), remote, State.INIT_SENT)
    sa.childless = childless or ep.config.childless == "force"
    sa.offered = list(ep.config.ike_proposals)
    group = next(t.id for t in sa.offered[0].transforms if t.type == 4)
    ep.sas[spi_i] = sa
    return _send_init(ep, sa, group)


def _send_init(ep, sa: IkeSa, group: int) -> list:
    """(Re)send IKE_SA_INIT; a retry keeps Ni (the COOKIE covers it, RFC 7296 s2.6) and renews KE only for a new group."""
    if sa.ke_private is None or sa.ke_private.group.id != group:
        sa.ke_private = ep.ke_private(_group(group))
    sa.ni = sa.ni or _nonce(ep)
    msg = Msg(IKE_SA_INIT, 0, False, True, sa.spi_i, bytes(8))
    if sa.cookie:
        msg.notifies.append(Notify("COOKIE", sa.cookie))
    msg.sa, msg.ke, msg.nonce = sa.offered, _ke_payload(ep, group, sa.ke_private), sa.ni
    if ep.config.bugs.omit_ke:
        msg.ke = None
    _natd(ep, msg, sa.local, sa.remote)
    _capabilities(ep, msg)
    datagrams = ep.encode(None, msg)
    sa.init_request = datagrams[0]
    sa.window = type(sa.window)(timeout=sa.window.timeout, max_sends=sa.window.max_sends)
    sa.window.allocate()
    sa.window.sent(0, datagrams, ep.clock(), "IKE_SA_INIT")
    sa.pending = {0: Pending("init")}
    return [Datagram(d, sa.local, sa.remote) for d in datagrams]


def _group(group_id: int):
    from harness.crypto import ke
    return ke(group_id)


def on_init_response(ep, sa: IkeSa, data: bytes, head: Msg, src: Address) -> list:
    """Initiator: COOKIE and INVALID_KE_PAYLOAD retries, errors, or keys and then the IKE_AUTH request."""
    if sa.state != State.INIT_SENT or 0 not in sa.pending:
        return []
    try:
        msg = view.decode(data, None, None)
    except view.PARSE_ERRORS as e:
        ep.fail("IKE_SA_INIT", IkeError(str(e), "INVALID_SYNTAX"), True)
        return []
    group = next(t.id for t in sa.offered[0].transforms if t.type == 4)
    cookie = msg.notify("COOKIE")
    if cookie is not None:
        if ep.config.bugs.ignore_cookie or sa.cookie == cookie.data:
            return []
        if sa.cookie and _unrepeated(sa):
            # Our retry with a cookie has gone out once and is not yet due again: this COOKIE may answer an older request
            # still in flight (a retransmission sent before the first COOKIE was taken). Retrying again would leave two
            # IKE_SA_INIT requests out, and the responder may answer either, while our AUTH signs the newest (RFC 7296
            # s2.15): measured under load, charon answered the first retry and failed the AUTH (MAC mismatched). A
            # COOKIE that answers the retry itself is taken when the retry is sent again (RFC 7296 s2.1).
            return []
        sa.cookie = cookie.data
        ep.events.append(CookieRetry(cookie.data))
        return _send_init(ep, sa, sa.ke_private.group.id if sa.ke_private else group)
    inv = msg.notify("INVALID_KE_PAYLOAD")
    if inv is not None:
        wanted = int.from_bytes(inv.data[:2], "big") if len(inv.data) >= 2 else 0
        offered = {t.id for p in sa.offered for t in p.transforms if t.type == 4}
        if wanted not in offered or wanted == sa.ke_private.group.id:
            ep.fail("IKE_SA_INIT", IkeError(f"INVALID_KE_PAYLOAD asks for group {wanted}", "INVALID_KE_PAYLOAD"), True)
            ep.remove_sa(sa, "INVALID_KE_PAYLOAD for a group not offered")
            return []
        ep.events.append(KeRetry("IKE_SA_INIT", wanted))
        return _send_init(ep, sa, wanted)
    err = child.error_notify(msg) or next((n for n in msg.notifies if n.type in ("INVALID_SYNTAX", "INVALID_MAJOR_VERSION")), None)
    if err is not None:
        ep.fail("IKE_SA_INIT", IkeError(f"responder sent {err.type}", err.type), True)
        ep.remove_sa(sa, f"IKE_SA_INIT failed: {err.type}")
        return []
    try:
        if msg.sa is None or msg.ke is None or msg.nonce is None:
            raise IkeError("IKE_SA_INIT response without SA, KE or Nonce", "INVALID_SYNTAX")
        chosen = check_chosen(sa.offered, msg.sa)
        suite = Suite.of(chosen)
        if suite.ke is None or msg.ke[0] != suite.ke.id or sa.ke_private.group.id != suite.ke.id:
            raise IkeError(f"responder's KE group {msg.ke[0]} does not match its choice / our KE", "INVALID_SYNTAX")
        if not 16 <= len(msg.nonce) <= 256:
            raise IkeError(f"responder's nonce is {len(msg.nonce)} octets (16..256)", "INVALID_SYNTAX")
        g_ir = sa.ke_private.exchange(msg.ke[1])
    except (IkeError, KeyExchangeError) as e:
        err = e if isinstance(e, IkeError) else IkeError(str(e), "INVALID_SYNTAX")
        ep.fail("IKE_SA_INIT", err, False)
        ep.remove_sa(sa, f"IKE_SA_INIT response rejected: {err}")
        return []
    sa.window.answered(0)
    sa.pending.clear()
    sa.spi_r, sa.nr, sa.suite, sa.init_response = head.spi_r, msg.nonce, suite, data
    if ep.config.bugs.half_open:
        ep.remove_sa(sa, HALF_OPEN)
        return []
    sa.keys = derive_ike_keys(suite.prf, suite.encr, suite.key_bits, suite.integ,
                              skeyseed(suite.prf, sa.ni, sa.nr, g_ir), sa.ni, sa.nr, sa.spi_i, sa.spi_r)
    _read_capabilities(sa, msg)
    _check_nat(ep, sa, msg, sa.local, src)
    if sa.nat_local or sa.nat_remote:
        sa.local, sa.remote = (sa.local[0], NATT_PORT), (src[0], NATT_PORT)
    sa.state = State.INIT_DONE
    if sa.childless and not sa.peer_childless and not ep.config.bugs.childless_unannounced:
        why = "the responder did not announce CHILDLESS_IKEV2_SUPPORTED: no childless IKE_AUTH (RFC 6023 s3)"
        ep.fail("IKE_SA_INIT", IkeError(why, "NO_PROPOSAL_CHOSEN"), False)
        ep.remove_sa(sa, why)
        return []
    return _send_auth(ep, sa)


# ---- responder: IKE_SA_INIT ----------------------------------------------------------------------

def _unrepeated(sa: IkeSa) -> bool:
    """True when the IKE_SA_INIT request outstanding on sa was sent once and not yet retransmitted."""
    first = sa.window.outstanding.get(0)
    return first is not None and first.sent == 1


def invalid_major_version(ep, head: Msg, src: Address, dst: Address) -> list:
    """RFC 7296 s2.5: answer a request of a higher major version with INVALID_MAJOR_VERSION (version 2)."""
    resp = Msg(head.exchange, head.message_id, True, False, head.spi_i, head.spi_r,
               notifies=[Notify("INVALID_MAJOR_VERSION", bytes([2 << 4]))])
    return [Datagram(d, dst, src) for d in view.encode(resp, None, ep.rng, 0, None)]


def _init_error(ep, head: Msg, src: Address, dst: Address, notify: Notify, why: str) -> list:
    ep.fail("IKE_SA_INIT", IkeError(why, notify.type), False)
    resp = Msg(IKE_SA_INIT, 0, True, False, head.spi_i, bytes(8), notifies=[notify])
    return [Datagram(d, dst, src) for d in view.encode(resp, None, ep.rng, 0, None)]


def on_init_request(ep, data: bytes, head: Msg, src: Address, dst: Address) -> list:
    """Responder: cookie policy, proposal choice, KE, keys; the IKE_SA_INIT response (or an error notify)."""
    known = ep.half_open.get((head.spi_i, src))
    if known is not None and head.message_id == 0:
        if known.init_request == data:  # a retransmission: resend, do not reprocess (RFC 7296 s2.1)
            return [Datagram(d, dst, src) for d in known.responses.responses.get(0, [])]
        return []
    try:
        msg = view.decode(data, None, None)
    except view.PARSE_ERRORS as e:  # RFC 7296 s2.21.1: answer a malformed IKE_SA_INIT with its error notify
        note = Notify(getattr(e, "notify", "INVALID_SYNTAX"), getattr(e, "data", b""))
        return _init_error(ep, head, src, dst, note, str(e))
    if msg.unknown_critical:
        return _init_error(ep, head, src, dst, Notify("UNSUPPORTED_CRITICAL_PAYLOAD", bytes([msg.unknown_critical[0]])),
                           f"unknown critical payload {msg.unknown_critical[0]}")
    if msg.sa is None or msg.nonce is None or msg.ke is None:
        return _init_error(ep, head, src, dst, Notify("INVALID_SYNTAX"), "IKE_SA_INIT request without SA, KE or Nonce")
    if ep.config.require_cookie:
        got = msg.notify("COOKIE")
        version = max(ep.cookie_secrets)
        if got is None or not cookie_valid(ep.cookie_secrets, got.data, msg.nonce, src[0], head.spi_i):
            cookie = make_cookie(ep.cookie_secrets[version], version, msg.nonce, src[0], head.spi_i)
            ep.events.append(CookieDemanded(got is not None, msg.ke[0]))
            resp = Msg(IKE_SA_INIT, 0, True, False, head.spi_i, bytes(8), notifies=[Notify("COOKIE", cookie)])
            return [Datagram(d, dst, src) for d in view.encode(resp, None, ep.rng, 0, None)]
    try:
        chosen = select(msg.sa, ep.config.ike_proposals, prefer_ke=msg.ke[0])
    except NoProposalChosen as e:
        return _init_error(ep, head, src, dst, Notify("NO_PROPOSAL_CHOSEN"), str(e))
    if ep.config.bugs.choose_unoffered_transform:
        from harness.ike.proposals import Transform
        chosen = type(chosen)(chosen.protocol, tuple(Transform(t.type, t.id, 192) if t.type == 1 and t.key_bits else t
                                                     for t in chosen.transforms), chosen.spi, chosen.number)
    suite = Suite.of(chosen)
    if msg.ke[0] != suite.ke.id:
        return _init_error(ep, head, src, dst, Notify("INVALID_KE_PAYLOAD", suite.ke.id.to_bytes(2, "big")),
                           f"KE for group {msg.ke[0]}, chose {suite.ke.name}")
    if not 16 <= len(msg.nonce) <= 256:
        return _init_error(ep, head, src, dst, Notify("INVALID_SYNTAX"), f"nonce of {len(msg.nonce)} octets (16..256)")
    priv = ep.ke_private(suite.ke)
    try:
        g_ir = priv.exchange(msg.ke[1])
    except KeyExchangeError as e:
        return _init_error(ep, head, src, dst, Notify("INVALID_SYNTAX"), str(e))
    spi_r = ep.rng(8)
    sa = ep.new_sa(False, head.spi_i, spi_r, src, State.INIT_DONE)
    sa.local = dst
    sa.ni, sa.nr, sa.suite, sa.init_request, sa.ke_private = msg.nonce, _nonce(ep), suite, data, priv
    sa.keys = derive_ike_keys(suite.prf, suite.encr, suite.key_bits, suite.integ,
                              skeyseed(suite.prf, sa.ni, sa.nr, g_ir), sa.ni, sa.nr, sa.spi_i, sa.spi_r)
    _read_capabilities(sa, msg)
    _check_nat(ep, sa, msg, dst, src)
    resp = Msg(IKE_SA_INIT, 0, True, False, sa.spi_i, sa.spi_r)
    resp.sa, resp.ke, resp.nonce = [chosen], _ke_payload(ep, suite.ke.id, priv), sa.nr
    if ep.config.bugs.omit_ke:
        resp.ke = None
    _natd(ep, resp, dst, src)
    _capabilities(ep, resp)
    if ep.config.trust_anchor is not None:
        resp.certreq.append((CERT_X509_SIGNATURE, ca_key_hash(ep.config.trust_anchor)))
    datagrams = ep.encode(None, resp)
    sa.init_response = datagrams[0]
    sa.responses.store(0, datagrams)
    ep.sas[spi_r] = sa
    ep.half_open[(sa.spi_i, src)] = sa
    return [Datagram(d, dst, src) for d in datagrams]


# ---- IKE_AUTH ------------------------------------------------------------------------------------

def _cert_payloads(cred) -> list[tuple[int, bytes]]:
    """CERT payloads: the end's certificate first, then its intermediate CAs up the chain (RFC 7296 s3.6)."""
    return [(CERT_X509_SIGNATURE, der) for der in (cred.cert_der, *cred.chain_der)]


def _auth_payload(ep, sa: IkeSa, octets: bytes) -> tuple[int, bytes]:
    c = ep.config
    if c.psk is not None and c.credential is None:
        method, data = AuthMethod.SHARED_KEY_MIC, psk_auth(sa.suite.prf, c.psk, octets)
    else:
        method, h, pss = (scheme_signature(c.signature, c.credential.key) if c.signature
                          else default_signature(c.credential.key, sa.peer_hashes or None))
        data = sign_auth(method, c.credential.key, octets, h, pss)
    if c.bugs.wrong_auth:
        data = data[:-1] + bytes([data[-1] ^ 0x01])
    return int(method), data


def _verify_peer(ep, sa: IkeSa, msg: Msg, peer_id: Identity | None, octets: bytes) -> None:
    """Check the peer's identity and AUTH payload; AuthenticationFailed if anything is wrong."""
    c = ep.config
    if peer_id is None or msg.auth is None:
        raise AuthenticationFailed("IKE_AUTH without ID or AUTH payload")
    if c.remote_id is not None and not peer_id.matches(c.remote_id):
        raise AuthenticationFailed(f"peer identity {peer_id} is not the configured {c.remote_id}")
    method, data = msg.auth
    sa.peer_auth = scheme_of(method, data)
    if method == AuthMethod.SHARED_KEY_MIC:
        if c.psk is None:
            raise AuthenticationFailed("peer used a shared key, none is configured")
        verify_psk(sa.suite.prf, c.psk, octets, data)
        return
    if c.trust_anchor is None:
        raise AuthenticationFailed(f"peer signed (method {method}), no trust anchor is configured")
    certs = [d for enc, d in msg.certs if enc == CERT_X509_SIGNATURE]
    if not certs:
        raise AuthenticationFailed("peer signed but sent no X.509 certificate")
    key = check_peer_cert(certs[0], c.trust_anchor, peer_id, intermediates=certs[1:])  # RFC 7296 s3.6: the end's first
    verify_auth(method, key, octets, data, frozenset(_announced(ep)) if method == AuthMethod.DIGITAL_SIGNATURE else None)


def _send_auth(ep, sa: IkeSa) -> list:
    c = ep.config
    ts_local, ts_remote = child.default_ts(ep, sa)

    def build(msg: Msg) -> None:
        msg.id_i = c.local_id
        if c.credential is not None and c.send_cert:
            msg.certs += _cert_payloads(c.credential)
        if c.trust_anchor is not None:
            msg.certreq.append((CERT_X509_SIGNATURE, ca_key_hash(c.trust_anchor)))
        if c.remote_id is not None:
            msg.id_r = c.remote_id
        octets = signed_octets(sa.init_request, sa.nr, sa.suite.prf, sa.keys.sk_pi, c.local_id)
        msg.auth = _auth_payload(ep, sa, octets)
        if c.window_size > 1:
            msg.notifies.append(Notify("SET_WINDOW_SIZE", c.window_size.to_bytes(4, "big")))
        if c.initial_contact:
            msg.notifies.append(Notify("INITIAL_CONTACT"))
        if not sa.childless:  # RFC 6023 s3: a childless IKE_AUTH has no SA, TSi or TSr
            sa.first_child = child.offer(ep, sa, msg, without_ke(c.child_proposals), ts_local, ts_remote, c.mode)
        if c.bugs.wrong_spi_r:
            msg.spi_r = bytes(8)

    sa.state = State.AUTH_SENT
    return ep.send_request(sa, IKE_AUTH, build, Pending("auth"))


def on_auth_request(ep, sa: IkeSa, msg: Msg, src: Address) -> Msg:
    """Responder: authenticate the initiator, negotiate the first Child SA; the IKE_AUTH response."""
    c = ep.config
    resp = Msg(IKE_AUTH, msg.message_id, True, False, sa.spi_i, sa.spi_r, encrypted=True)
    if sa.state != State.INIT_DONE:
        resp.notifies.append(Notify("INVALID_SYNTAX"))
        return resp
    ep.half_open.pop((sa.spi_i, sa.remote), None)
    sa.remote = src
    _read_window(sa, msg)
    try:
        octets = signed_octets(sa.init_request, sa.nr, sa.suite.prf, sa.keys.sk_pi, msg.id_i) if msg.id_i else b""
        _verify_peer(ep, sa, msg, msg.id_i, octets)
    except AuthenticationFailed as e:
        ep.fail("IKE_AUTH", e, False)
        resp.notifies.append(Notify("AUTHENTICATION_FAILED"))
        sa.delete_after_response = f"initiator failed authentication: {e}"
        return resp
    sa.peer_id = str(msg.id_i)
    if c.bugs.auth_error_without_id:
        return _bare_error(ep, sa, resp, c.bugs.auth_error_without_id)
    resp.id_r = c.local_id
    if c.credential is not None and c.send_cert:
        resp.certs += _cert_payloads(c.credential)
    octets = signed_octets(sa.init_response, sa.ni, sa.suite.prf, sa.keys.sk_pr, c.local_id)
    try:
        resp.auth = _auth_payload(ep, sa, octets)
    except ConfigError as e:
        ep.fail("IKE_AUTH", AuthenticationFailed(str(e)), False)
        resp.id_r, resp.certs = None, []
        resp.notifies.append(Notify("AUTHENTICATION_FAILED"))
        sa.delete_after_response = f"cannot sign: {e}"
        return resp
    if c.window_size > 1:
        resp.notifies.append(Notify("SET_WINDOW_SIZE", c.window_size.to_bytes(4, "big")))
    sa.state = State.ESTABLISHED
    ep.events.append(IkeSaEstablished(sa.ike_keys, sa.peer_id, peer_auth=sa.peer_auth, started=sa.created_at,
                                      we_initiated=False))
    if msg.sa is None and msg.ts_i is None and msg.ts_r is None and c.childless != "never":
        ep.events.append(ChildlessIkeSa(False, sa.peer_childless))  # RFC 6023 s3: no Child SA is created
        return resp
    try:
        ch = child.accept(ep, sa, msg, resp, sa.ni, sa.nr, without_ke(c.child_proposals), allow_ke=False)
    except IkeError as e:
        ep.fail("IKE_AUTH", e, False)
        resp.sa, resp.ts_i, resp.ts_r, resp.ke = None, None, None, None
        resp.notifies = [n for n in resp.notifies if n.type == "SET_WINDOW_SIZE"] + [Notify(e.notify, e.data)]
        if e.notify in IKE_SA_ENDING:
            sa.delete_after_response = f"IKE_AUTH answered with {e.notify}: no IKE SA (RFC 7296 s2.21.2)"
        return resp
    child.install(ep, sa, ch)
    return resp


def _bare_error(ep, sa: IkeSa, resp: Msg, notify: str) -> Msg:
    """Bugs.auth_error_without_id: the IKE_AUTH response is this error notify alone (no IDr, no AUTH); the SA is dropped."""
    ep.fail("IKE_AUTH", IkeError(f"Bugs.auth_error_without_id: {notify} without IDr and AUTH", notify), False)
    resp.notifies.append(Notify(notify))
    sa.delete_after_response = f"Bugs.auth_error_without_id: answered IKE_AUTH with {notify} alone"
    return resp


def _read_window(sa: IkeSa, msg: Msg) -> None:
    n = msg.notify("SET_WINDOW_SIZE")
    if n is not None and len(n.data) == 4:
        sa.peer_window = max(1, int.from_bytes(n.data, "big"))
        sa.window.window_size = sa.peer_window


def on_auth_response(ep, sa: IkeSa, msg: Msg, pending: Pending) -> list:
    """Initiator: check the responder's AUTH and the first Child SA."""
    err = msg.notify("AUTHENTICATION_FAILED")
    if err is not None:
        ep.fail("IKE_AUTH", AuthenticationFailed("responder rejected our authentication"), True)
        ep.remove_sa(sa, "our authentication failed at the responder")
        return []
    errors = _error_notifies(msg)
    if errors and (msg.id_r is None or msg.auth is None):
        return _unauthenticated_error(ep, sa, msg, errors[0])
    try:
        octets = signed_octets(sa.init_response, sa.ni, sa.suite.prf, sa.keys.sk_pr, msg.id_r) if msg.id_r else b""
        _verify_peer(ep, sa, msg, msg.id_r, octets)
    except AuthenticationFailed as e:
        ep.fail("IKE_AUTH", e, False)
        sa.state = State.ESTABLISHED  # to carry the INFORMATIONAL that reports it (RFC 7296 s2.21.2)
        out = ep.send_request(sa, INFORMATIONAL, lambda m: m.notifies.append(Notify("AUTHENTICATION_FAILED")),
                              Pending("delete_ike", {"reason": f"responder failed authentication: {e}"}))
        sa.state = State.DELETING
        return out
    sa.peer_id = str(msg.id_r)
    _read_window(sa, msg)
    sa.state = State.ESTABLISHED
    ep.events.append(IkeSaEstablished(sa.ike_keys, sa.peer_id, peer_auth=sa.peer_auth, started=sa.created_at,
                                      we_initiated=True))
    cerr = child.error_notify(msg)
    if cerr is not None:
        ep.fail("IKE_AUTH", IkeError(f"first Child SA refused: {cerr.type}", cerr.type), True)
        if cerr.type in IKE_SA_ENDING:
            ep.remove_sa(sa, f"IKE_AUTH answered with {cerr.type}: no IKE SA (RFC 7296 s2.21.2)")
        return []
    if sa.childless:
        return _childless_response(ep, sa, msg)
    try:
        ch = child.complete(ep, sa, msg, sa.first_child, sa.ni, sa.nr)
    except IkeError as e:
        ep.fail("IKE_AUTH", e, False)
        return _delete_unwanted_child(ep, sa, msg)
    child.install(ep, sa, ch)
    return []


def _childless_response(ep, sa: IkeSa, msg: Msg) -> list:
    """Initiator of a childless IKE_AUTH: the response must carry no Child SA (RFC 6023 s3); one that does is
    reported (we offered none, so there is no SA of ours to delete) and the IKE SA stands."""
    if msg.sa is None and msg.ts_i is None and msg.ts_r is None:
        ep.events.append(ChildlessIkeSa(True, sa.peer_childless))
    else:
        ep.fail("IKE_AUTH", IkeError("the response to a childless IKE_AUTH carries SA/TSi/TSr (RFC 6023 s3: "
                                     "the responder must not create a Child SA)", "INVALID_SYNTAX"), False)
    return []


def _error_notifies(msg: Msg) -> list[Notify]:
    """The error notifies of msg (RFC 7296 s3.10.1: types below 16384), in order."""
    return [n for n in msg.notifies if NOTIFY.value(int(n.type) if n.type.isdigit() else n.type) <= ERROR_NOTIFY_MAX]


def _missing_auth(msg: Msg) -> str:
    """Which of IDr and AUTH the IKE_AUTH response lacks ("IDr", "AUTH" or "IDr and AUTH")."""
    return " and ".join(name for name, value in (("IDr", msg.id_r), ("AUTH", msg.auth)) if value is None)


def _unauthenticated_error(ep, sa: IkeSa, msg: Msg, err: Notify) -> list:
    """An error notify without IDr/AUTH: report it as received, answer nothing, drop the SA (RFC 7296 s2.21.2)."""
    why = f"IKE_AUTH response with {err.type} but without {_missing_auth(msg)}"
    if err.type in child.CHILD_ERRORS and err.type not in UNAUTHENTICATED_ERRORS:
        why += " (RFC 7296 s1.2, s2.21.2: a Child SA error must come with IDr and AUTH, and the IKE SA stands)"
    elif err.type not in UNAUTHENTICATED_ERRORS:
        why += f" (RFC 7296 s2.21.2: only {', '.join(UNAUTHENTICATED_ERRORS)} may come unauthenticated)"
    ep.fail("IKE_AUTH", IkeError(why, err.type), True)
    ep.remove_sa(sa, f"IKE SA not authenticated: {err.type} without {_missing_auth(msg)}")
    return []


def _delete_unwanted_child(ep, sa: IkeSa, msg: Msg) -> list:
    """The responder created a Child SA we reject: delete it (RFC 7296 s2.9: the initiator may delete)."""
    if not msg.sa or len(msg.sa[0].spi) != 4:
        return []
    from harness.ike import exchange_child
    return exchange_child.delete_spis(ep, sa, int(msg.sa[0].protocol), [sa.first_child["spi_in"]])
