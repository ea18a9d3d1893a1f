"""The project's JSON keys file: {"ipsec_sas": [...], ...}; each section has a parser in SECTIONS."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError
from harness.ike.export import IkeSaKeys
from harness.keys.model import IpsecSaKeys

_SA_KEYS = {"protocol", "spi", "src", "dst", "mode", "encryption", "encryption_key", "integrity", "integrity_key", "esn"}


def _hex(where: str, key: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: key {key!r}: expected a hex string, got {type(value).__name__}")
    text = value[2:] if value[:2].lower() == "0x" else value
    try:
        return bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raise ConfigError(f"{where}: key {key!r}: {value!r} is not hex") from None


def parse_ipsec_sa(entry: Any, where: str) -> IpsecSaKeys:
    """One entry of "ipsec_sas"; ConfigError naming `where` and the key when it is wrong."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - _SA_KEYS)
    if unknown:
        raise ConfigError(f"{where}: key {unknown[0]!r}: unknown (known: {', '.join(sorted(_SA_KEYS))})")
    for key in ("protocol", "spi", "src", "dst"):
        if key not in entry:
            raise ConfigError(f"{where}: key {key!r}: missing")
    spi = entry["spi"]
    if isinstance(spi, str):
        try:
            spi = int(spi, 0)
        except ValueError:
            raise ConfigError(f"{where}: key 'spi': {entry['spi']!r} is not a number (write it as \"0x...\")") from None
    elif not isinstance(spi, int) or isinstance(spi, bool):
        raise ConfigError(f"{where}: key 'spi': expected \"0x...\", got {type(spi).__name__}")
    for key in ("protocol", "src", "dst", "mode", "encryption", "integrity"):
        if key in entry and not isinstance(entry[key], str):
            raise ConfigError(f"{where}: key {key!r}: expected a string, got {type(entry[key]).__name__}")
    esn = entry.get("esn", False)
    if not isinstance(esn, bool):
        raise ConfigError(f"{where}: key 'esn': expected true or false")
    return IpsecSaKeys.checked(where, protocol=entry["protocol"], spi=spi, src=entry["src"], dst=entry["dst"], mode=entry.get("mode", "transport"),
                  encryption=entry.get("encryption"), encryption_key=_hex(where, "encryption_key", entry.get("encryption_key", "")),
                  integrity=entry.get("integrity"), integrity_key=_hex(where, "integrity_key", entry.get("integrity_key", "")), esn=esn)


def ipsec_sa_to_json(sa: IpsecSaKeys) -> dict[str, Any]:
    """The JSON object for one SA (encryption absent for AH, integrity absent for AEAD)."""
    out: dict[str, Any] = {"protocol": sa.protocol, "spi": f"0x{sa.spi:08x}", "src": sa.src, "dst": sa.dst, "mode": sa.mode}
    if sa.encryption is not None:
        out["encryption"], out["encryption_key"] = sa.encryption, sa.encryption_key.hex()
    if sa.integrity is not None:
        out["integrity"], out["integrity_key"] = sa.integrity, sa.integrity_key.hex()
    out["esn"] = sa.esn
    return out


Parser = Callable[[Any, str], Any]
Writer = Callable[[Any], dict[str, Any]]
# section name -> (parse one entry, write one entry). The IKE helper registers "ike_sas" here.
SECTIONS: dict[str, tuple[Parser, Writer]] = {"ipsec_sas": (parse_ipsec_sa, ipsec_sa_to_json),
                                               "ike_sas": (IkeSaKeys.from_json, IkeSaKeys.to_json)}


@dataclass
class KeysFile:
    """A parsed keys file: ipsec_sas, plus entries of any other registered section by name."""

    ipsec_sas: list[IpsecSaKeys] = field(default_factory=list)
    sections: dict[str, list[Any]] = field(default_factory=dict)

    def find(self, spi: int, protocol: str | None = None) -> list[IpsecSaKeys]:
        """The IPsec SAs with this SPI (and protocol, if given)."""
        return [sa for sa in self.ipsec_sas if sa.spi == spi and (protocol is None or sa.protocol == protocol)]


def parse_keys(data: Any, source: str = "<keys>") -> KeysFile:
    """A KeysFile from decoded JSON; ConfigError naming source, section, entry index and key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object with key 'ipsec_sas'")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: key {unknown[0]!r}: unknown section (known: {', '.join(SECTIONS)})")
    out = KeysFile()
    for name, (parse, _) in SECTIONS.items():
        if name != "ipsec_sas" and name not in data:
            continue  # optional sections stay absent (a round trip adds nothing)
        entries = data.get(name, [])
        if not isinstance(entries, list):
            raise ConfigError(f"{source}: key {name!r}: expected a list")
        parsed = [parse(e, f"{source}: {name}[{i}]") for i, e in enumerate(entries)]
        if name == "ipsec_sas":
            out.ipsec_sas = parsed
        else:
            out.sections[name] = parsed
    seen: dict[tuple[str, int, str], int] = {}
    for i, sa in enumerate(out.ipsec_sas):
        k = (sa.protocol, sa.spi, sa.dst)
        if k in seen:
            raise ConfigError(f"{source}: ipsec_sas[{i}]: key 'spi': {sa.protocol} SPI 0x{sa.spi:08x} to {sa.dst} already in ipsec_sas[{seen[k]}]")
        seen[k] = i
    return out


def load_keys(path: str | Path) -> KeysFile:
    """Read a JSON keys file; ConfigError naming the file (and entry and key) when it is wrong."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read keys file: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    return parse_keys(data, str(p))


def keys_to_json(keys: KeysFile) -> dict[str, Any]:
    """The JSON object of a KeysFile."""
    out: dict[str, Any] = {"ipsec_sas": [ipsec_sa_to_json(sa) for sa in keys.ipsec_sas]}
    for name, entries in keys.sections.items():
        out[name] = [SECTIONS[name][1](e) for e in entries]
    return out


def dump_keys(keys: KeysFile | list[IpsecSaKeys], path: str | Path) -> None:
    """Write a JSON keys file (a list is taken as its ipsec_sas)."""
    if isinstance(keys, list):
        keys = KeysFile(ipsec_sas=keys)
    Path(path).write_text(json.dumps(keys_to_json(keys), indent=1) + "\n")
