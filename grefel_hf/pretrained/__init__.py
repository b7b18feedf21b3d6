"""The trained models that ship inside the package, so that prediction works the moment it is installed.

Each is a saved model folder (config, float16 weights, processor config, and the same weights as `model.onnx` for
ONNX Runtime) with its validation metrics, provenance and model card (`README.md`); `grefel_hf/bundling.py` writes
them. A bundle carries no remote code and its configs name
none: the installed package's own classes load it. Nothing is read at import.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_MODELS = {
    "grefel-ferplus": "GReFEL on EfficientNet-Lite0 at 112 px, trained on FER+ (8 classes: neutral, happiness, "
                      "surprise, sadness, anger, disgust, fear, contempt)",
    "grefel-fer2013": "GReFEL on EfficientNet-Lite0 at 112 px, trained on FER2013 (7 classes: angry, disgust, fear, "
                      "happy, sad, surprise, neutral)",
}
"""The bundled models by name, with what each is."""

DEFAULT_MODEL = "grefel-ferplus"
"""The model `grefel-hf predict`, `explain`, `export-onnx` and `pipeline("facial-expression-recognition")` use when
none is given."""

PRETRAINED_DIR = Path(__file__).resolve().parent


def pretrained_model_path(name: str = DEFAULT_MODEL) -> str:
    """The folder of the bundled model `name`, for `from_pretrained` or `pipeline(model=...)`.

    Raises:
        ValueError: `name` is not a bundled model (the message lists them).
        FileNotFoundError: the model's files are missing from this installation.
    """
    if name not in BUNDLED_MODELS:
        raise ValueError(f"no bundled model named {name!r}; the bundled models are {sorted(BUNDLED_MODELS)}")
    folder = PRETRAINED_DIR / name
    missing = [f for f in ("config.json", "model.safetensors", "preprocessor_config.json") if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"the bundled model {name!r} is missing {missing} in {folder}: reinstall grefel_hf, "
                                "or give a model folder saved by train_hf.py (--model DIR, model=DIR)")
    return str(folder)


def resolve_model_path(model: str | Path | None) -> Path:
    """The model a command or pipeline is given, as a path: the default bundled model for None, a bundled model's
    folder for its name (when no file or folder of that name exists), `model` itself otherwise."""
    if model is None:
        return Path(pretrained_model_path())
    if isinstance(model, str) and model in BUNDLED_MODELS and not Path(model).exists():
        return Path(pretrained_model_path(model))
    return Path(model)


__all__ = ["BUNDLED_MODELS", "DEFAULT_MODEL", "PRETRAINED_DIR", "pretrained_model_path", "resolve_model_path"]
