"""strongSwan proposal syntax -> Libreswan ike=/esp=/ah=: the table, checked against recorded `ipsec algparse` runs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.errors import ConfigError, UnsupportedProposal
from harness.ike.proposals import TransformType, parse_proposal
from harness.peers.libreswan_proposals import translate

DATA = json.loads((Path(__file__).parent / "data" / "proposal_translations.json").read_text())
MODP_BITS = {"MODP1536": 5, "MODP2048": 14, "MODP3072": 15, "MODP4096": 16, "MODP6144": 17, "MODP8192": 18}


def _id(case: dict) -> str:
    return f"{case['protocol']}:{','.join(case['strongswan'])}"


@pytest.mark.parametrize("case", DATA["cases"], ids=_id)
def test_translation_matches_the_recorded_table(case: dict) -> None:
    got = translate(case["strongswan"], case["protocol"])
    assert (got.value, got.pfs, got.esn) == (case["libreswan"], case["pfs"], case["esn"])


@pytest.mark.parametrize("version", ["algparse_4.10", "algparse_5.2"])
@pytest.mark.parametrize("case", DATA["cases"], ids=_id)
def test_libreswan_parsed_the_translation_into_the_same_transforms(case: dict, version: str) -> None:
    lines = case[version]
    assert not any("ERROR" in line or "ignoring" in line for line in lines), lines
    assert len(lines) == len(case["strongswan"])
    for text, line in zip(case["strongswan"], lines):
        p = parse_proposal(text, case["protocol"])
        groups = [g.split("+") for g in line.split("-")]
        kes = [t.id for t in p.of_type(TransformType.KE)]
        if kes:  # the last group names the KE methods, in order
            named = [MODP_BITS.get(g) or int(re.fullmatch(r"DH(\d+)", g).group(1)) for g in groups[-1]]  # type: ignore[union-attr]
            assert named == kes
        encrs = p.of_type(TransformType.ENCR)
        if encrs:
            assert len(groups[0]) == len(encrs)
            for t, g in zip(encrs, groups[0]):
                if t.key_bits:
                    assert g.endswith(f"_{t.key_bits}"), (t, g)
        icv = {18: "GCM_8", 19: "GCM_12", 20: "GCM_16", 14: "CCM_8", 15: "CCM_12", 16: "CCM_16"}
        for t in encrs:
            if t.id in icv:
                assert icv[t.id] in line


@pytest.mark.parametrize("case", DATA["unsupported"], ids=_id)
def test_unsupported_combinations_name_the_proposal_and_keyword(case: dict) -> None:
    with pytest.raises(UnsupportedProposal) as e:
        translate(case["strongswan"], case["protocol"])
    assert e.value.keyword == case["keyword"]
    assert e.value.proposal in ",".join(case["strongswan"])
    assert case["keyword"] in str(e.value) and e.value.implementation == "libreswan"


def test_invalid_strongswan_syntax_is_a_config_error_naming_the_proposal() -> None:
    with pytest.raises(ConfigError, match="aes128-bogus"):
        translate(["aes128-bogus"], "esp")
    with pytest.raises(ConfigError, match="protocol"):
        translate(["aes128"], "gre")


def test_esn_choice() -> None:
    assert translate(["aes128gcm16-esn"], "esp").esn == "yes"
    assert translate(["aes128gcm16-noesn"], "esp").esn == "no"
    assert translate(["aes128gcm16-esn-noesn"], "esp").esn == "either"
    assert translate(["aes128gcm16"], "esp").esn == "no"  # strongSwan's default: no ESN
