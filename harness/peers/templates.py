"""Config templates are data files (peers/<impl>/templates/*), filled with string.Template: no logic in them.

Every placeholder must be given; a missing one is a ConfigError naming the template and the key.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from string import Template

from harness.errors import ConfigError

PEERS_DIR = Path(__file__).resolve().parents[2] / "peers"


def template_path(implementation: str, name: str) -> Path:
    """The path of a template file of one implementation (peers/<implementation>/templates/<name>)."""
    return PEERS_DIR / implementation / "templates" / name


def render(implementation: str, name: str, values: Mapping[str, object]) -> str:
    """Fill peers/<implementation>/templates/<name> with values; ConfigError naming the missing key."""
    path = template_path(implementation, name)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"template {path}: cannot read: {e.strerror}") from None
    try:
        return Template(text).substitute({k: str(v) for k, v in values.items()})
    except KeyError as e:
        raise ConfigError(f"template {path}: no value for ${{{e.args[0]}}}") from None
    except ValueError as e:
        raise ConfigError(f"template {path}: {e}") from None
