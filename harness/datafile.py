"""Reading the project's JSON data files (connections, case tables, vectors) with one kind of error."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import ConfigError


def load_json(path: str | Path) -> Any:
    """The parsed content of a JSON file; ConfigError naming the file and, for bad JSON, the line and column."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: not JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
