"""The model `grefel-hf predict`, `explain`, `export-onnx` and `pipeline("facial-expression-recognition")` use when
none is given: the package's bundled default model (`grefel_hf.pretrained`)."""

from __future__ import annotations

from pathlib import Path

from ..pretrained import BUNDLED_MODELS, pretrained_model_path


def default_model_path() -> Path:
    """The bundled default model's folder (`grefel_hf.pretrained.DEFAULT_MODEL`).

    Raises:
        FileNotFoundError: its files are missing from this installation (the message says what to pass instead).
    """
    return Path(pretrained_model_path())


def resolve_model_path(model: str | Path | None) -> Path:
    """`model` as a path; the bundled default when it is None; a bundled model's folder when it is the name of one
    (`grefel_hf.pretrained.BUNDLED_MODELS`) and no file or folder of that name exists."""
    if model is None:
        return default_model_path()
    if isinstance(model, str) and model in BUNDLED_MODELS and not Path(model).exists():
        return Path(pretrained_model_path(model))
    return Path(model)


__all__ = ["default_model_path", "resolve_model_path"]
