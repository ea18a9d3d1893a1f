"""Wireshark's ``ikev2_decryption_table`` UAT file (Preferences > Protocols > ISAKMP > IKEv2 Decryption Table), read.

One IKE SA per line, eight comma-separated fields in the order Wireshark 4.0 packet-isakmp.c
defines them: Initiator's SPI, Responder's SPI, SK_ei, SK_er, encryption algorithm, SK_ai,
SK_ar, integrity algorithm. Byte fields are bare hex (as harness.ike.export writes them;
a quoted hex field is accepted too), the algorithm fields are quoted value strings
(harness/ike/wireshark_ikev2.json maps them to the registry's names and key sizes). Lines
starting with '#' are comments. The writer is ``harness.ike.export.IkeSaKeys.wireshark_line``.
"""
from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from harness.errors import ConfigError, KeyMaterialError, UnknownTransform
from harness.ike.export import IkeSaKeys
from harness.keys.uat import split_uat_row

_WS = json.loads(resources.files("harness.ike").joinpath("wireshark_ikev2.json").read_text())
_ENCR_BY_WS = {v: (k.split("/")[0], int(k.split("/")[1])) for k, v in _WS["encryption"].items()}
_INTEG_BY_WS = {v: (k or None) for k, v in _WS["integrity"].items()}
FIELDS = ("spi_i", "spi_r", "sk_ei", "sk_er", "encryption", "sk_ai", "sk_ar", "integrity")
_HEX_RE = re.compile(r"[0-9A-Fa-f]*")


def _bytes(where: str, key: str, text: str) -> bytes:
    if not _HEX_RE.fullmatch(text) or len(text) % 2:
        raise ConfigError(f"{where}: key {key!r}: {text!r} is not hex")
    return bytes.fromhex(text)


def _check_keys(where: str, keys: IkeSaKeys) -> None:
    """ConfigError naming where when the SK_* sizes do not fit the transforms."""
    from harness.ike.sk import IkeSkKeys  # harness.ike.sk pulls in the IKE codec: only when a table is read
    sk = IkeSkKeys.from_ike_sa_keys(keys)
    for initiator, (e, a) in ((True, ("sk_ei", "sk_ai")), (False, ("sk_er", "sk_ar"))):
        try:
            sk.for_sender(initiator)
        except (KeyMaterialError, UnknownTransform, ConfigError) as err:
            key = e if "SK_e" in str(err) else a
            raise ConfigError(f"{where}: key {key!r}: {err}") from None


def parse_ikev2_decryption_table(text: str, source: str = "<ikev2_decryption_table>") -> list[IkeSaKeys]:
    """The IKE SAs of an ikev2_decryption_table file's text; ConfigError naming source, line and key."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}: line {lineno}"
        values = split_uat_row(line, where, bare=True)
        if len(values) != len(FIELDS):
            raise ConfigError(f"{where}: {len(values)} fields, expected {len(FIELDS)} ({', '.join(FIELDS)})")
        f = dict(zip(FIELDS, values))
        if f["encryption"] not in _ENCR_BY_WS:
            raise ConfigError(f"{where}: key 'encryption': {f['encryption']!r} is not a Wireshark 4.0 IKEv2 encryption algorithm")
        if f["integrity"] not in _INTEG_BY_WS:
            raise ConfigError(f"{where}: key 'integrity': {f['integrity']!r} is not a Wireshark 4.0 IKEv2 integrity algorithm")
        b = {k: _bytes(where, k, f[k]) for k in ("spi_i", "spi_r", "sk_ei", "sk_er", "sk_ai", "sk_ar")}
        for k in ("spi_i", "spi_r"):
            if len(b[k]) != 8:
                raise ConfigError(f"{where}: key {k!r}: {len(b[k])} octets, IKE SPIs are 8")
        encryption, key_bits = _ENCR_BY_WS[f["encryption"]]
        keys = IkeSaKeys(encryption=encryption, key_bits=key_bits, integrity=_INTEG_BY_WS[f["integrity"]], **b)
        _check_keys(where, keys)
        out.append(keys)
    return out


def load_ikev2_decryption_table(path: str | Path) -> list[IkeSaKeys]:
    """Read an ikev2_decryption_table file; ConfigError naming the file (and line and key) when it is wrong."""
    p = Path(path)
    try:
        return parse_ikev2_decryption_table(p.read_text(), str(p))
    except OSError as e:
        raise ConfigError(f"{p}: cannot read ikev2_decryption_table file: {e.strerror}") from None
