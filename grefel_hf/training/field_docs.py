"""Arguments that mirror the fields of another class (a model config, the training objective): their help is read
from that class's docstring (one text, never two), and `with_fields` adds them to an argument dataclass."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from typing import Any


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


def with_fields(specs: Iterable[tuple[str, Any, dataclasses.Field]]) -> Callable[[type], type]:
    """A class decorator that adds generated fields to an argument class, below `@dataclass`:

        @dataclass
        @with_fields(config_field_arguments())
        class ModelArguments: ...

    Each spec is `(name, type, dataclasses.field(...))`, as a field written in the class body would be; the generated
    fields follow the written ones. It exists for arguments that must mirror another class's fields (a model config,
    the objective), so that each of those is written once, in its own class.
    """
    specs = list(specs)

    def add_fields(cls: type) -> type:
        annotations = cls.__dict__.get("__annotations__", {})
        for name, annotation, spec in specs:
            if name in annotations:
                raise ValueError(f"{cls.__name__} already declares the field {name!r}")
            annotations[name] = annotation
            setattr(cls, name, spec)
        cls.__annotations__ = annotations
        return cls

    return add_fields


__all__ = ["docstring_field_docs", "with_fields"]
