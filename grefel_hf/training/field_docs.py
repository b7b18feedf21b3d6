"""Argument help read from the docstrings of the classes whose fields the arguments set (one text, never two)."""

from __future__ import annotations

import re


def docstring_field_docs(documented: type) -> dict[str, str]:
    """`{field name: description}` from a docstring written as transformers writes config docstrings:
    ``name (`type`, *optional*, defaults to X):`` then the description, indented four spaces more."""
    docs: dict[str, str] = {}
    current = None
    for line in (documented.__doc__ or "").splitlines():
        match = re.match(r"^ {8}(\w+) \(`", line)
        if match:
            current = match.group(1)
            docs[current] = ""
        elif current and line.startswith(" " * 12):
            docs[current] = f"{docs[current]} {line.strip()}".strip()
        elif line.strip():
            current = None
    return docs


__all__ = ["docstring_field_docs"]
