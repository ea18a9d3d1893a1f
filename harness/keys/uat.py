"""Wireshark UAT rows (esp_sa, ikev2_decryption_table): comma-separated fields, quoted with \\xNN escapes."""
from __future__ import annotations

from harness.errors import ConfigError


def split_uat_row(line: str, where: str, bare: bool = False) -> list[str]:
    """The fields of one UAT line; bare=True also takes unquoted fields. ConfigError naming where and the column."""
    fields, i, n = [], 0, len(line)
    while True:
        if i < n and line[i] == '"':
            i += 1
            raw = bytearray()
            while i < n and line[i] != '"':
                if line[i] == "\\" and line[i + 1: i + 2] == "x" and i + 4 <= n:
                    try:
                        raw.append(int(line[i + 2: i + 4], 16))
                    except ValueError:
                        raise ConfigError(f"{where}: field {len(fields) + 1}: bad escape at column {i + 1}") from None
                    i += 4
                else:
                    raw += line[i].encode()
                    i += 1
            if i >= n:
                raise ConfigError(f"{where}: field {len(fields) + 1}: unterminated quote")
            fields.append(raw.decode(errors="replace"))
            i += 1
        elif bare:
            end = line.find(",", i)
            end = n if end < 0 else end
            fields.append(line[i:end].strip())
            i = end
        else:
            raise ConfigError(f"{where}: field {len(fields) + 1}: expected '\"' at column {i + 1}")
        if i >= n:
            return fields
        if line[i] != ",":
            raise ConfigError(f"{where}: field {len(fields)}: expected ',' at column {i + 1}")
        i += 1
