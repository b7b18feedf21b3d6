"""The model `grefel-hf predict`, `explain`, `export-onnx` and `pipeline("facial-expression-recognition")` use when
none is given: one place to change once a trained model ships with the package."""

from __future__ import annotations

from pathlib import Path

BUNDLED_MODEL_DIR = Path(__file__).resolve().parent.parent / "bundled_model"
"""Where a model bundled with the package lives (a folder saved by `save_grefel_folder`)."""


def default_model_path() -> Path:
    """The bundled model's folder.

    Raises:
        FileNotFoundError: no model is bundled with this installation yet (the message says what to pass instead).
    """
    if (BUNDLED_MODEL_DIR / "config.json").is_file():
        return BUNDLED_MODEL_DIR
    raise FileNotFoundError("no model is bundled with this grefel_hf installation yet: give a model folder saved by "
                            "train_hf.py or save_grefel_folder (--model DIR on the command line, model=DIR for "
                            "pipeline())")


def resolve_model_path(model: str | Path | None) -> Path:
    """`model` as a path, or the bundled default when it is None."""
    return default_model_path() if model is None else Path(model)


__all__ = ["BUNDLED_MODEL_DIR", "default_model_path", "resolve_model_path"]
