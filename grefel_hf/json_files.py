"""Reading the small JSON files GReFEL folders carry (metrics, trainer state, run records), with clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_file(path: str | Path, what: str = "JSON file") -> Any:
    """Parse `path`. A missing file raises FileNotFoundError and invalid JSON a ValueError; both name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


__all__ = ["read_json_file"]
