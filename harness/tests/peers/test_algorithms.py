"""Each implementation's own algorithm list, as recorded from this project's images, read into IANA transform IDs."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.crypto import TransformType as T
from harness.errors import ParseError
from harness.ike.proposals import parse_proposal
from harness.peers.algorithms import builtin_algorithms, parse_swanctl_list_algs, parse_whack_status

DATA = Path(__file__).parent / "data" / "algorithms"


@pytest.mark.parametrize("version", ["5.9", "6.0"])
def test_strongswan_lists_what_its_plugins_provide(version: str) -> None:
    a = parse_swanctl_list_algs((DATA / f"strongswan-{version}.list-algs.txt").read_text())
    for t in [(T.ENCR, 12), (T.ENCR, 13), (T.ENCR, 20), (T.ENCR, 16), (T.ENCR, 28), (T.INTEG, 5), (T.INTEG, 8),
              (T.INTEG, 14), (T.PRF, 4), (T.PRF, 8), (T.KE, 18), (T.KE, 21), (T.KE, 31), (T.KE, 32)]:
        assert t in a.ike and t in a.child, t
    assert (T.ENCR, 21) not in a.ike  # NULL_AUTH_AES_GMAC: no plugin of these images lists it
    assert (T.ENCR, 21) in a.child  # but charon's kernel interface installs it for a Child SA (the kernel computes it)
    # left out: what has no IKEv2 transform ID (ECB, CFB, non-IKE ciphers, untruncated HMACs, Camellia MACs)
    assert {u.split(":")[1] for u in a.unknown} == {
        "AES_ECB", "RC2_CBC", "AES_CFB", "HMAC_SHA1_128", "DES_ECB", "SERPENT_CBC", "TWOFISH_CBC", "HMAC_SHA2_256_256",
        "HMAC_SHA2_384_384", "HMAC_SHA2_512_512", "CAMELLIA_XCBC_96", "PRF_KEYED_SHA1", "PRF_FIPS_SHA1_160",
        "PRF_CAMELLIA128_XCBC", "MODP_CUSTOM"}
    assert "encryption:AES_ECB" in a.unknown


@pytest.mark.parametrize("version", ["4.10", "5.2"])
def test_libreswan_lists_ike_and_kernel_algorithms_apart(version: str) -> None:
    a = parse_whack_status((DATA / f"libreswan-{version}.whack-status.txt").read_text())
    for t in [(T.ENCR, 12), (T.ENCR, 18), (T.ENCR, 20), (T.ENCR, 28), (T.PRF, 4), (T.PRF, 7), (T.INTEG, 12),
              (T.KE, 14), (T.KE, 18), (T.KE, 21), (T.KE, 31)]:
        assert t in a.ike, t
    assert (T.KE, 32) not in a.ike and (T.ENCR, 16) not in a.ike  # no Curve448, no AES-CCM for IKE
    assert {(T.ENCR, 16), (T.ENCR, 21), (T.INTEG, 8)} <= a.child and (T.ENCR, 16) not in a.ike
    # PFS for a Child SA is computed by pluto itself: the IKE groups, not a kernel list
    assert {t for t in a.child if t[0] == T.KE} == {t for t in a.ike if t[0] == T.KE} != set()
    assert a.unknown == ("AH/ESP auth:HMAC_SHA2_256_TRUNCBUG",)


def test_missing_names_the_transforms_an_end_does_not_list() -> None:
    a = parse_whack_status((DATA / "libreswan-5.2.whack-status.txt").read_text())
    assert a.missing(parse_proposal("aes128gcm16-prfsha256-ecp256", "ike"), child=False) == []
    assert a.missing(parse_proposal("aes256ccm16-prfsha256-x448", "ike"), child=False) == [
        "ENCR:ENCR_AES_CCM_16_256", "KE:CURVE448"]
    assert a.missing(parse_proposal("aes128ccm16", "esp"), child=True) == []


def test_the_built_in_stack_lists_its_registry() -> None:
    a = builtin_algorithms()
    assert {(T.ENCR, 28), (T.INTEG, 5), (T.PRF, 4), (T.KE, 32)} <= a.ike == a.child


@pytest.mark.parametrize("text", ["encryption:\nAES_CBC[aesni]\n", "not a section\n", "encryption:\n  aes cbc\n"])
def test_a_list_of_another_shape_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError, match="swanctl --list-algs"):
        parse_swanctl_list_algs(text)


def test_whack_output_without_algorithms_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="whack --status"):
        parse_whack_status("000 using kernel interface: xfrm\n")
