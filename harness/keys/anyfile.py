"""Load keys files of any supported kind, told apart by content, and merge them: ``load_keys_files(paths) -> KeysFile``.

Kinds: the project's JSON (first character '{'), Wireshark's esp_sa (first row starts with
"IPv4" or "IPv6" in quotes) and Wireshark's ikev2_decryption_table (first row starts with a
16-hex-digit SPI). Files with only comments add nothing. IKE SAs land in
``KeysFile.sections["ike_sas"]``; every IKE SA's SK_* sizes are checked against its transforms.
"""
from __future__ import annotations

import re
from pathlib import Path

from harness.errors import ConfigError
from harness.keys.ikev2_table import _check_keys, parse_ikev2_decryption_table
from harness.keys.jsonfile import KeysFile, load_keys
from harness.keys.wireshark import parse_esp_sa

_IKE_ROW = re.compile(r'"?[0-9A-Fa-f]{16}"?\s*,')


def kind_of(text: str) -> str:
    """"json", "esp_sa", "ikev2_decryption_table" or "empty" for a keys file's text."""
    if text.lstrip()[:1] == "{":
        return "json"
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(('"IPv4"', '"IPv6"')):
            return "esp_sa"
        if _IKE_ROW.match(line):
            return "ikev2_decryption_table"
        raise ConfigError(f"first row {line[:40]!r} is neither JSON, a Wireshark esp_sa row nor an ikev2_decryption_table row")
    return "empty"


def load_keys_file(path: str | Path) -> KeysFile:
    """One keys file of any kind as a KeysFile; ConfigError naming the file (and entry/line and key)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read keys file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file") from None
    try:
        kind = kind_of(text)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    if kind == "json":
        keys = load_keys(p)
        for i, k in enumerate(keys.sections.get("ike_sas", [])):
            _check_keys(f"{p}: ike_sas[{i}]", k)
        return keys
    if kind == "esp_sa":
        return KeysFile(ipsec_sas=parse_esp_sa(text, str(p)))
    if kind == "ikev2_decryption_table":
        return KeysFile(sections={"ike_sas": parse_ikev2_decryption_table(text, str(p))})
    return KeysFile()


def load_keys_files(paths: list[str | Path]) -> KeysFile:
    """Every file's SAs in one KeysFile (IPsec SAs and IKE SAs listed in more than one file kept once)."""
    out = KeysFile(sections={"ike_sas": []})
    for p in paths:
        k = load_keys_file(p)
        out.ipsec_sas += [sa for sa in k.ipsec_sas if sa not in out.ipsec_sas]
        out.sections["ike_sas"] += [sa for sa in k.sections.get("ike_sas", []) if sa not in out.sections["ike_sas"]]
    return out
