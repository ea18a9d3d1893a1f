"""SK (RFC 7296 s3.14) and SKF (RFC 7383) protection with every encryption transform of harness.crypto."""
from __future__ import annotations

import random

import pytest

from harness.crypto import ENCR, encr
from harness.errors import ConfigError, IkeParseError, IntegrityError, KeyMaterialError
from harness.ike.bend import Bend
from harness.ike.constants import NOTIFY
from harness.ike.message import IKE_AUTH, INFORMATIONAL, Header, Message
from harness.ike.payloads import AUTH, KE, SK, IDi, Nonce, Notify, V, encode_chain
from harness.ike.sk import IkeSkKeys, Reassembler, SkKeys, decrypt_message, fragment, open_encrypted, protect
from harness.vectors import as_params, load_vectors, unhex

VECTORS = "ike/rfc7634_sk_message.json"
SPI_I, SPI_R = bytes.fromhex("0102030405060708"), bytes.fromhex("a1a2a3a4a5a6a7a8")


def keys_for(encr_id: int, integ_id: int | str = "AUTH_HMAC_SHA2_256_128", seed: int = 1) -> SkKeys:
    """Deterministic keys of the right sizes for one transform (and HMAC-SHA2-256 for non-AEAD)."""
    rnd = random.Random(seed)
    e = encr(encr_id)
    bits = max(e.key_bits) if e.key_bits else None
    sk_e = rnd.randbytes(e.key_size(bits))
    if e.aead:
        return SkKeys(e, sk_e)
    from harness.crypto import integ
    i = integ(integ_id)
    return SkKeys(e, sk_e, i, rnd.randbytes(i.key_size))


def counter_rng(start: int = 0):
    state = [start]

    def rng(n: int) -> bytes:
        state[0] += 1
        return (state[0] % 256).to_bytes(1, "big") * n
    return rng


INNER = [IDi(2, b"tester.example"), AUTH(2, bytes(32)), Notify("INITIAL_CONTACT")]
HEADER = Header(SPI_I, SPI_R, IKE_AUTH, 1, initiator=True)


@pytest.mark.parametrize("record", as_params(load_vectors(VECTORS)))
def test_rfc7634_sk_message(record):
    keys = SkKeys.of(record["encr"], unhex(record, "sk_e"))
    datagram = unhex(record, "datagram")
    if not record["valid"]:
        err = {"IntegrityError": IntegrityError, "IkeParseError": IkeParseError}[record["error"]]
        with pytest.raises(err) as e:
            decrypt_message(datagram, keys)
        if "field" in record:
            assert e.value.field == record["field"]
        return
    got = decrypt_message(datagram, keys)
    assert got.plaintext == unhex(record, "plaintext")[:-1]  # minus the Pad Length octet
    assert [(NOTIFY.name(p.type), p.data.hex()) for p in got.inner] == \
        [(i["type"], i["data"]) for i in record["inner"]]
    assert got.message.payloads[0].first_payload == record["first_payload"]
    # encoding reproduces the datagram bit for bit
    h = Header.decode(datagram)
    again = protect(h, got.inner, keys, rng=lambda n: unhex(record, "iv"))
    assert again == datagram


@pytest.mark.parametrize("encr_id", sorted(ENCR), ids=lambda i: ENCR[i].name)
def test_every_encryption_transform_round_trips(encr_id):
    keys = keys_for(encr_id)
    d = protect(HEADER, INNER, keys, rng=counter_rng())
    m = Message.decode(d, strict=True)
    assert isinstance(m.payloads[-1], SK) and m.header.length == len(d)
    got = decrypt_message(d, keys, strict=True)
    assert got.inner == INNER
    assert got.plaintext == encode_chain(INNER)[1]
    if keys.encr.block_size > 1:
        ct_len = len(m.payloads[-1].data) - keys.encr.iv_size - keys.icv_size
        assert ct_len % keys.encr.block_size == 0
    with pytest.raises(IntegrityError):
        decrypt_message(protect(HEADER, INNER, keys, bends=[Bend("sk_icv_flip", index=3)]), keys)
    tampered = bytearray(d)
    tampered[20] ^= 0x01  # Message ID: covered by the ICV / AAD
    with pytest.raises(IntegrityError):
        decrypt_message(bytes(tampered), keys)


@pytest.mark.parametrize("integ_id", ["AUTH_HMAC_MD5_96", "AUTH_HMAC_SHA1_96", "AUTH_AES_XCBC_96",
                                      "AUTH_HMAC_SHA2_256_128", "AUTH_HMAC_SHA2_384_192", "AUTH_HMAC_SHA2_512_256"])
def test_integrity_transforms_with_aes_cbc(integ_id):
    keys = keys_for(12, integ_id)
    d = protect(HEADER, INNER, keys)
    assert decrypt_message(d, keys).inner == INNER
    inner_len = len(encode_chain(INNER)[1])  # 70 octets + Pad Length -> 5 AES blocks
    assert len(Message.decode(d).payloads[-1].data) == 16 + (inner_len + 1 + 15) // 16 * 16 + keys.integ.icv_size


def test_cbc_icv_covers_the_whole_message():
    keys = keys_for(12)
    d = protect(HEADER, INNER, keys, rng=counter_rng())
    icv = keys.integ.icv(keys.sk_a, d[:-keys.icv_size])
    assert d[-keys.icv_size:] == icv


def test_aead_aad_is_header_and_sk_header():
    keys = keys_for(20)
    iv = bytes(range(8))
    d = protect(HEADER, [Nonce(bytes(16))], keys, rng=lambda n: iv)
    ct = d[28 + 4 + 8:]
    assert keys.encr.decrypt(keys.sk_e, iv, ct, d[:32]) == Nonce(bytes(16)).encode() + b"\x00"


def test_outer_payloads_before_sk_are_authenticated():
    keys = keys_for(12)
    d = protect(HEADER, INNER, keys, outer=[V(b"outer")])
    got = decrypt_message(d, keys)
    assert isinstance(got.message.payloads[0], V) and got.inner == INNER


def test_ike_sa_keys_pick_the_direction():
    pair = IkeSkKeys(12, 12, b"e" * 32, b"a" * 32, b"E" * 32, b"A" * 32)
    req = protect(HEADER, INNER, pair.for_sender(True))
    resp = protect(Header(SPI_I, SPI_R, IKE_AUTH, 1, response=True), INNER, pair.for_sender(False))
    assert decrypt_message(req, pair).inner == INNER and decrypt_message(resp, pair).inner == INNER
    with pytest.raises(IntegrityError):
        decrypt_message(req, pair.for_sender(False))


def test_keys_validation():
    with pytest.raises(ConfigError):
        SkKeys.of(20, bytes(20), 12, bytes(32))
    with pytest.raises(ConfigError):
        SkKeys.of(12, bytes(16))
    with pytest.raises(ConfigError):
        SkKeys.of(12, bytes(16), "AUTH_AES_128_GMAC", bytes(20))
    with pytest.raises(KeyMaterialError, match="SK_e"):
        SkKeys.of(20, bytes(16))  # salt missing
    with pytest.raises(KeyMaterialError, match="SK_a"):
        SkKeys.of(12, bytes(16), 12, bytes(20))


def test_bad_pad_length_and_short_body():
    keys = keys_for(20)
    with pytest.raises(IkeParseError) as e:
        decrypt_message(protect(HEADER, INNER, keys, bends=[Bend("sk_pad_length", value=250)]), keys)
    assert e.value.field == "Pad Length"
    short = Message(HEADER, [SK(35, bytes(10))]).encode()
    with pytest.raises(IkeParseError) as e:
        decrypt_message(short, keys)
    assert e.value.field == "Payload Length"
    extra = protect(HEADER, INNER, keys, bends=[Bend("sk_extra_padding", value=3)])
    assert decrypt_message(extra, keys).inner == INNER


def test_inner_bends_and_unknown_critical_inside_sk():
    keys = keys_for(28)
    d = protect(HEADER, INNER, keys, bends=[Bend("insert_unknown", index=0, value=210, critical=True, inner=True)])
    with pytest.raises(IkeParseError) as e:
        decrypt_message(d, keys)
    assert e.value.notify == "UNSUPPORTED_CRITICAL_PAYLOAD" and e.value.payload == "SK/210"
    d = protect(HEADER, INNER, keys, bends=[Bend("strip", index=1, inner=True)])
    assert [type(p) for p in decrypt_message(d, keys).inner] == [IDi, Notify]


# -- SKF (RFC 7383) -----------------------------------------------------------------------------------------------

BIG = [IDi(2, b"tester.example"), AUTH(14, bytes(range(256)) * 3), Notify("INITIAL_CONTACT")]


@pytest.mark.rfc(7383, "2.5", "MUST")
@pytest.mark.parametrize("encr_id", [12, 13, 16, 20, 28], ids=lambda i: ENCR[i].name)
def test_fragments_fit_and_reassemble_out_of_order(encr_id):
    keys = keys_for(encr_id)
    frags = fragment(HEADER, BIG, keys, 300)
    assert len(frags) >= 3 and all(len(f) <= 300 for f in frags)
    msgs = [Message.decode(f, strict=True) for f in frags]
    skf = [m.payloads[0] for m in msgs]
    assert [(s.fragment_number, s.total_fragments) for s in skf] == [(n, len(frags)) for n in range(1, len(frags) + 1)]
    assert skf[0].first_payload == 35 and all(s.first_payload == 0 for s in skf[1:])
    assert {m.header.message_id for m in msgs} == {1}
    r = Reassembler()
    order = list(reversed(frags))
    results = [decrypt_message(f, keys, r) for f in order[:-1]]
    assert results == [None] * (len(frags) - 1)
    assert r.missing() == {(SPI_I, SPI_R, 1, True, False): [1]}
    assert decrypt_message(frags[1], keys, r) is None and r.duplicates == 1
    done = decrypt_message(order[-1], keys, r)
    assert done.inner == BIG and r.missing() == {}


@pytest.mark.rfc(7383, "2.6", "MUST")
def test_fragments_are_authenticated_individually():
    keys = keys_for(12)
    frags = fragment(HEADER, BIG, keys, 300)
    bad = bytearray(frags[1])
    bad[-1] ^= 1
    r = Reassembler()
    with pytest.raises(IntegrityError):
        decrypt_message(bytes(bad), keys, r)
    assert r.missing() == {}
    lone = decrypt_message(frags[0], keys)
    assert lone.fragment == (1, len(frags)) and lone.inner is None and open_encrypted(lone.message, keys)


@pytest.mark.rfc(7383, "2.6", "MUST")
def test_larger_total_restarts_reassembly():
    keys = keys_for(28)
    coarse, fine = fragment(HEADER, BIG, keys, 600), fragment(HEADER, BIG, keys, 300)
    r = Reassembler()
    assert decrypt_message(coarse[0], keys, r) is None
    assert decrypt_message(fine[0], keys, r) is None
    assert decrypt_message(coarse[1], keys, r) is None  # stale: smaller total
    out = [decrypt_message(f, keys, r) for f in fine[1:]]
    assert out[-1].inner == BIG


def test_fragment_size_too_small():
    with pytest.raises(ConfigError):
        fragment(HEADER, BIG, keys_for(12), 60)


def test_informational_single_fragment():
    keys = keys_for(20)
    frags = fragment(Header(SPI_I, SPI_R, INFORMATIONAL, 5), [], keys, 1280)
    assert len(frags) == 1
    assert decrypt_message(frags[0], keys, Reassembler()).inner == []


def test_keys_from_the_ike_sas_export_form():
    from harness.ike.export import IkeSaKeys
    k = IkeSaKeys(SPI_I, SPI_R, "ENCR_AES_GCM_16", 256, bytes(36), bytes(range(36)), None, b"", b"")
    pair = IkeSkKeys.from_ike_sa_keys(k)
    resp = protect(Header(SPI_I, SPI_R, IKE_AUTH, 1, response=True), INNER, pair.for_sender(False))
    assert decrypt_message(resp, pair).inner == INNER


@pytest.mark.rfc(7383, "2.5", "MUST")
def test_next_payload_in_later_fragments_is_a_finding():
    keys = keys_for(20)
    frags = fragment(HEADER, BIG, keys, 300)
    bent = fragment(HEADER, BIG, keys, 300, bends=[Bend("next_payload", index=0, value=35)])
    assert Message.decode(frags[1], strict=True).findings == []
    assert [f.rule for f in Message.decode(bent[1]).findings] == ["skf-next-payload"]
    with pytest.raises(IkeParseError):
        Message.decode(bent[1], strict=True)


def test_bend_indices_outside_the_message_are_config_errors():
    with pytest.raises(ConfigError):
        protect(HEADER, INNER, keys_for(20), bends=[Bend("strip", index=9, inner=True)])
    with pytest.raises(ConfigError):
        Message(HEADER, []).encode([Bend("poke", index=0, offset=2)])


@pytest.mark.rfc(7383, "2.6", "MUST")
def test_requests_of_both_sides_with_one_message_id_reassemble_apart():
    pair = IkeSkKeys(20, None, bytes(36), b"", bytes(range(36)), b"")
    mine = fragment(HEADER, BIG, pair.for_sender(True), 300)
    theirs = fragment(Header(SPI_I, SPI_R, IKE_AUTH, 1, initiator=False), BIG[1:], pair.for_sender(False), 300)
    r, done = Reassembler(), []
    for a, b in zip(mine, theirs):
        done += [x for x in (decrypt_message(a, pair, r), decrypt_message(b, pair, r)) if x is not None]
    for f in mine[len(theirs):] + theirs[len(mine):]:
        done += [x for x in [decrypt_message(f, pair, r)] if x is not None]
    assert sorted(len(d.inner) for d in done) == [2, 3] and r.missing() == {}


def test_unencodable_values_are_config_errors():
    with pytest.raises(ConfigError, match="KE"):
        Message(HEADER, [KE(70000, b"")]).encode()
    with pytest.raises(ConfigError, match="V"):
        Message(HEADER, [V(bytes(70000))]).encode()
