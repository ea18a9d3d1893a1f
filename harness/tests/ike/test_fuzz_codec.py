"""Property tests of the IKEv2 codec: every payload and whole messages round-trip; any input only raises typed errors."""
from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings, strategies as st

from harness.errors import IkeParseError, IntegrityError
from harness.ike.message import Header, Message
from harness.ike.payloads import (PAYLOAD_CLASSES, AUTH, CERT, CERTREQ, CP, EAP, KE, SA, SK, Attribute, ConfigAttribute, D, IDi,
                                  IDr, Nonce, Notify, ParseContext, Proposal, RawSelector, Selector, Transform, TSi,
                                  TSr, UnknownPayload, V, decode_chain, encode_chain)
from harness.ike.sk import Reassembler, SkKeys, decrypt_message, fragment, protect

# bounded for CI: structured strategies are costly to generate, so those tests draw fewer examples
BOUNDED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEAVY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
blob = st.binary(max_size=40)

attribute = st.one_of(st.builds(Attribute, st.integers(0, 0x7FFF), u16),
                      st.builds(Attribute, st.integers(0, 0x7FFF).filter(lambda t: t != 14), blob))
transform = st.builds(Transform, u8, u16, st.lists(attribute, max_size=3))
proposal = st.builds(Proposal, u8, u8, st.sampled_from([b"", b"\x01\x02\x03\x04", bytes(8)]),
                     st.lists(transform, min_size=1, max_size=4))
v4 = st.ip_addresses(v=4).map(lambda a: ipaddress.IPv4Address(int(a)))
v6 = st.ip_addresses(v=6).map(lambda a: ipaddress.IPv6Address(int(a)))
selector = st.one_of(
    st.builds(Selector, v4, v4, u8, u16, u16), st.builds(Selector, v6, v6, u8, u16, u16),
    st.builds(RawSelector, st.integers(9, 255), blob, u8))
eap = st.tuples(st.integers(1, 4), u8, st.binary(max_size=30)).map(
    lambda t: bytes([t[0], t[1]]) + (4 + len(t[2])).to_bytes(2, "big") + t[2])
spi = st.sampled_from([b"", b"\x01\x02\x03\x04", bytes(range(8))])

PAYLOADS = {
    "SA": st.builds(SA, st.lists(proposal, min_size=1, max_size=3)),
    "KE": st.builds(KE, u16, blob),
    "IDi": st.builds(IDi, u8, blob), "IDr": st.builds(IDr, u8, blob),
    "CERT": st.builds(CERT, u8, blob), "CERTREQ": st.builds(CERTREQ, u8, blob),
    "AUTH": st.builds(AUTH, u8, blob),
    "Nonce": st.builds(Nonce, st.binary(min_size=16, max_size=64)),
    "N": st.builds(Notify, u16, blob, u8, spi),
    "D": st.one_of(st.builds(D, st.just(1), st.just([])),
                   st.builds(D, st.sampled_from([2, 3]), st.lists(st.binary(min_size=4, max_size=4), max_size=4))),
    "V": st.builds(V, blob),
    "TSi": st.builds(TSi, st.lists(selector, max_size=3)), "TSr": st.builds(TSr, st.lists(selector, max_size=3)),
    "CP": st.builds(CP, u8, st.lists(st.builds(ConfigAttribute, st.integers(0, 0x7FFF), blob), max_size=3)),
    "EAP": st.builds(EAP, eap),
    "unknown": st.builds(UnknownPayload, st.integers(128, 255), blob),
}
any_payload = st.one_of(*PAYLOADS.values())
header = st.builds(Header, st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8),
                   st.integers(34, 37), u32, st.booleans(), st.booleans())


@HEAVY
@given(st.one_of(*(s.map(lambda p: [p]) for s in PAYLOADS.values())))
def test_each_payload_type_round_trips(chain):
    first, data = encode_chain(chain)
    assert decode_chain(data, first, ParseContext(strict=False)) == chain


@HEAVY
@given(header, st.lists(any_payload, max_size=6), st.one_of(st.none(), st.binary(min_size=20, max_size=60)))
def test_messages_round_trip(h, payloads, sk_body):
    if sk_body is not None:
        payloads = payloads + [SK(41, sk_body)]
    m = Message(h, payloads)
    d = m.encode()
    back = Message.decode(d)
    assert back == m and back.raw == d and back.encode() == d


def _only_typed(data: bytes, strict: bool) -> None:
    try:
        Message.decode(data, strict)
    except IkeParseError as e:
        assert e.offset >= 0 and e.field and e.notify


@BOUNDED
@given(st.binary(max_size=200), st.booleans())
def test_arbitrary_bytes_raise_only_typed_errors(data, strict):
    _only_typed(data, strict)


@BOUNDED
@given(st.binary(max_size=120), st.integers(33, 53), st.booleans())
def test_arbitrary_chain_after_valid_header_raises_only_typed_errors(body, first, strict):
    head = Header(bytes(8), bytes(8), 35, 1).encode()
    head = head[:16] + bytes([first]) + head[17:24] + (28 + len(body)).to_bytes(4, "big")
    _only_typed(head + body, strict)


@BOUNDED
@given(st.sampled_from(sorted(PAYLOAD_CLASSES)), st.binary(max_size=60), st.booleans(), st.booleans())
def test_arbitrary_body_of_every_payload_type_raises_only_typed_errors(ptype, body, critical, strict):
    """A well-framed payload of each known type with an arbitrary body."""
    chain = bytes([0, 0x80 if critical else 0]) + (4 + len(body)).to_bytes(2, "big") + body
    try:
        decode_chain(chain, ptype, ParseContext(strict))
    except IkeParseError as e:
        assert 0 <= e.offset <= len(chain)


@HEAVY
@given(header, st.lists(any_payload, min_size=1, max_size=5), st.data())
def test_mutated_valid_messages_raise_only_typed_errors(h, payloads, data):
    d = bytearray(Message(h, payloads).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        i = data.draw(st.integers(0, len(d) - 1)) if d else 0
        if kind == "flip" and d:
            d[i] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and d:
            d[i] = data.draw(u8)
        elif kind == "cut":
            del d[i:i + data.draw(st.integers(1, 8))]
        else:
            d[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    _only_typed(bytes(d), data.draw(st.booleans()))


KEYS = [SkKeys.of(12, bytes(range(16)), 12, bytes(range(32))), SkKeys.of(20, bytes(range(20))),
        SkKeys.of(28, bytes(range(36)))]


@HEAVY
@given(st.sampled_from(KEYS), st.lists(any_payload, max_size=4), st.data())
def test_mutated_protected_messages_raise_only_typed_errors(keys, inner, data):
    d = bytearray(protect(Header(bytes(8), bytes(8), 35, 1), inner, keys, rng=lambda n: bytes(n)))
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(d) - 1))
        d[i] ^= 1 << data.draw(st.integers(0, 7))
    if data.draw(st.booleans()):
        del d[data.draw(st.integers(0, len(d) - 1)):]
    try:
        got = decrypt_message(bytes(d), keys)
        assert got.inner == inner or got.inner is None
    except (IkeParseError, IntegrityError):
        pass


@BOUNDED
@given(st.sampled_from(KEYS), st.binary(max_size=100), st.integers(0, 60))
def test_decrypted_garbage_raises_only_typed_errors(keys, plaintext, first):
    """Authentic SK bodies whose plaintext is garbage: the inner chain decoder only raises IkeParseError."""
    from harness.ike.payloads import UnknownPayload as Raw
    d = protect(Header(bytes(8), bytes(8), 35, 1), [Raw(first or 1, plaintext)], keys, rng=lambda n: bytes(n),
                bends=[])
    try:
        decrypt_message(d, keys)
    except IkeParseError:
        pass


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(KEYS), st.lists(any_payload, min_size=1, max_size=5), st.integers(100, 400), st.randoms())
def test_fragments_reassemble_in_any_order_with_duplicates(keys, inner, mtu, rnd):
    frags = fragment(Header(bytes(8), bytes(8), 35, 7), inner, keys, mtu)
    feed = frags + [rnd.choice(frags) for _ in range(len(frags) // 2)]
    rnd.shuffle(feed)
    r, done = Reassembler(), []
    for f in feed:
        got = decrypt_message(f, keys, r)
        if got is not None:
            done.append(got)
    assert len(done) >= 1 and done[0].inner == inner


def _bend_strategy(n_payloads: int):
    from harness.ike.bend import STAGES, Bend
    ops = sorted(op for op, stage in STAGES.items() if stage in ("list", "payload", "header", "datagram"))
    return st.builds(Bend, st.sampled_from(ops), st.integers(-n_payloads, n_payloads - 1),
                     st.one_of(st.none(), st.integers(0, 300)), st.integers(-8, 8), st.integers(0, 7),
                     st.booleans(), st.binary(max_size=6))


@HEAVY
@given(header, st.lists(any_payload, min_size=1, max_size=4), st.data())
def test_any_bend_yields_a_message_or_a_typed_error(h, payloads, data):
    """Every bend op with arbitrary parameters: encoding gives bytes (or ConfigError for an impossible
    bend), and the decoder answers with a message or IkeParseError, never anything else."""
    from harness.errors import ConfigError
    bends = data.draw(st.lists(_bend_strategy(len(payloads)), min_size=1, max_size=3))
    try:
        d = Message(h, payloads).encode(bends)
    except ConfigError:
        return
    _only_typed(d, data.draw(st.booleans()))
