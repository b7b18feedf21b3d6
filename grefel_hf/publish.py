"""Publishing a trained GReFEL model to the Hugging Face Hub: stage, validate, then upload.

``publish`` (behind ``push_to_hub.py``) runs three steps and stops at the first failure:

1. **Stage** a self-contained folder: weights (safetensors), ``config.json`` with ``auto_map``, the processor
   config, the flat remote-code files, a ``README.md`` model card built by ``grefel_hf.model_card`` from an
   evaluation ``metrics.json``, the evaluation figures and the small run records.
2. **Validate** it in a fresh Python process where ``grefel_hf`` cannot be imported: it must load through
   ``AutoModelForImageClassification`` and ``pipeline`` with ``trust_remote_code=True``, reproduce the logits
   of the in-process model on a fixed image, and have a card that ``ModelCard.load`` parses.
3. **Upload** with ``create_repo`` + ``upload_folder``, unless only a local folder was asked for. Network and
   token problems are detected before anything is staged, so a push that cannot succeed fails fast.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import create_repo, get_token, snapshot_download, upload_folder
from PIL import Image
from safetensors.torch import save_file

from .calibration.fitting import CALIBRATION_FILE, CalibrationRecord
from .factory import build_image_processor
from .hub import RUN_CONFIG_FILE, SELECTION_FILE, missing_files, save_grefel_folder
from .image_processing_grefel import GReFELImageProcessor
from .json_files import read_json_file
from .metrics.classification import as_variants, read_metrics_json
from .model_card import MODEL_INDEX_METRICS, TrainingRecord, build_model_card
from .modeling_grefel import GReFELForImageClassification

logger = logging.getLogger(__name__)

# Hub ids are "namespace/name": letters, digits, '-', '_' and '.', not starting or ending with '-' or '.'.
_REPO_ID_PATTERN = re.compile(r"^[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9])?/[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?$")
UPLOAD_IGNORE_PATTERNS = ["__pycache__/*", "*/__pycache__/*", "*.pyc", "checkpoint-*"]
"""Never uploaded: byte-code caches and Trainer checkpoints (upload_folder patterns match across '/')."""

FIGURES = {
    "confusion_matrix.png": "confusion_matrix_image",
    "reliability_diagram.png": "reliability_diagram_image",
    "risk_coverage.png": "risk_coverage_image",
    "training_curves.png": "training_curves_image",
}
"""Evaluation figures copied into the stage when found, and the build_model_card argument that links each."""

RUN_RECORDS = (SELECTION_FILE, "all_results.json", CALIBRATION_FILE)
"""Small run records of the model folder that are uploaded as they are (training_config.json is not:
it holds the trainer's local paths; the card shows its hyper-parameters instead)."""

VALIDATION_TIMEOUT_S = 600
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


@dataclass
class PushArguments:
    """Arguments of ``push_to_hub.py``: what to publish, where, and what the model card says."""

    model_dir: str = field(metadata={"help": "Trained GReFEL folder (train_hf.py's output_dir) or a Hub model id."})
    repo_id: str = field(metadata={"help": "Target Hub repository, 'namespace/name'."})
    local_dir: str | None = field(
        default=None,
        metadata={"help": "Stage and validate into this new or empty folder WITHOUT uploading anything."},
    )
    private: bool = field(default=False, metadata={"help": "Create the Hub repository as private."})
    metrics: str | None = field(
        default=None,
        metadata={"help": "metrics.json of the evaluation CLI; figures beside it are uploaded too. Without it "
                          "the card says the model was not evaluated."},
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Evaluation data name shown in the card; the training run's dataset when not given."},
    )
    dataset_id: list[str] = field(
        default_factory=list, metadata={"help": "Hub dataset id(s); the first is the model-index dataset."}
    )
    dataset_split: str = field(default="test", metadata={"help": "Split the metrics were computed on."})
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration, if any."})
    license: str = field(default="apache-2.0", metadata={"help": "Hub license identifier of the model."})
    model_name: str | None = field(default=None, metadata={"help": "Card title; the repo name when not given."})
    commit_message: str = field(default="Upload GReFEL model", metadata={"help": "Commit message of the upload."})

    def __post_init__(self) -> None:
        check_repo_id(self.repo_id)


@dataclass
class PublishResult:
    """What ``publish`` did: ``staged_dir`` is None when the stage was a temporary folder (deleted)."""

    repo_id: str
    uploaded: bool
    staged_dir: Path | None = None
    commit_url: str | None = None


def check_repo_id(repo_id: str) -> None:
    """Raise ValueError unless ``repo_id`` looks like a Hub model id ``namespace/name``."""
    if not isinstance(repo_id, str) or not _REPO_ID_PATTERN.match(repo_id) or ".." in repo_id or "--" in repo_id:
        raise ValueError(f"--repo_id must look like 'namespace/name' (letters, digits, '-', '_', '.'), "
                         f"got {repo_id!r}")


def hub_offline() -> bool:
    """Whether offline mode is on, from huggingface_hub's constant or the current environment."""
    return bool(hub_constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE_VALUES


def check_push_possible() -> None:
    """Raise RuntimeError when an upload cannot work: offline mode is on, or no Hugging Face token is set."""
    if hub_offline():
        raise RuntimeError("pushing to the Hub needs network access but HF_HUB_OFFLINE is set: unset "
                           "HF_HUB_OFFLINE, or pass --local_dir DIR to stage and validate the folder without "
                           "uploading")
    if get_token() is None:
        raise RuntimeError("no Hugging Face token found: run `hf auth login` or set the HF_TOKEN environment "
                           "variable (a token with write access), or pass --local_dir DIR to stage only")


def _looks_like_hub_id(name: str) -> bool:
    """Whether a missing path could instead be a Hub model id (relative 'namespace/name')."""
    return bool(_REPO_ID_PATTERN.match(name)) and not name.startswith((".", os.sep))


def resolve_model_dir(model_dir: str | os.PathLike) -> Path:
    """The local folder of ``model_dir``: the folder itself, or a Hub model id downloaded into the cache.

    Raises:
        FileNotFoundError: neither an existing folder nor a downloadable Hub model.
    """
    path = Path(model_dir)
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"--model_dir {path} is a file, expected a trained GReFEL model folder")
        return path
    if not _looks_like_hub_id(str(model_dir)):
        raise FileNotFoundError(f"model folder not found: {path}")
    try:
        return Path(snapshot_download(str(model_dir), ignore_patterns=UPLOAD_IGNORE_PATTERNS))
    except Exception as err:  # offline, unknown repo, gated, network: all mean "cannot get this model"
        raise FileNotFoundError(f"model folder not found: {model_dir} is no local folder, and downloading it "
                                f"from the Hub failed: {err}") from err


def check_model_folder(folder: Path) -> None:
    """Raise FileNotFoundError / ValueError unless ``folder`` holds a saved GReFEL model (config + safetensors)."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} is not a saved model folder: config.json is missing")
    if "model.safetensors" in missing_files(folder):
        found = sorted(p.name for p in folder.glob("*.bin"))
        hint = f" (found {found}: only safetensors weights are published)" if found else ""
        raise FileNotFoundError(f"{folder} has no model.safetensors weights{hint}")
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{config_path} is not a valid JSON config: {err}") from err
    if model_type != "grefel":
        raise ValueError(f"{config_path} has model_type {model_type!r}, expected 'grefel': not a GReFEL model")


def load_model_and_processor(folder: Path) -> tuple[GReFELForImageClassification, Any]:
    """The model (eval mode) and its image processor; a folder without one gets the default processor."""
    model = GReFELForImageClassification.from_pretrained(folder).eval()
    if (folder / "preprocessor_config.json").is_file():
        processor = GReFELImageProcessor.from_pretrained(folder)
    else:
        logger.warning("%s has no preprocessor_config.json: using the default processor of its config", folder)
        processor = build_image_processor(model.config)
    return model, processor


def label_names(config) -> list[str]:
    """Class names in class-id order from a config's ``id2label``."""
    return [config.id2label[i] for i in range(config.num_labels)]


def select_metrics(metrics_path: str | os.PathLike, model_dir: Path, names: list[str]) -> dict[str, Any]:
    """The metrics dict of the pushed weights from a metrics.json, checked against the model's labels.

    A file with variants (``{"raw": ..., "ema": ...}``) gives the variant named by the model folder's
    weights_selection.json, else ``"raw"``.
    """
    metrics_path = Path(metrics_path)
    variants = as_variants(read_metrics_json(metrics_path))
    if "" in variants:
        metrics = variants[""]
    else:
        selection_path = model_dir / SELECTION_FILE
        selected = read_json_file(selection_path).get("selected", "raw") if selection_path.is_file() else "raw"
        if selected not in variants:
            raise ValueError(f"{metrics_path} has variants {sorted(variants)}, but the pushed weights are "
                             f"{selected!r} (from {selection_path if selection_path.is_file() else 'the default'})")
        logger.info("card reports the %r variant of %s", selected, metrics_path)
        metrics = variants[selected]
    if list(metrics["labels"]) != names:
        raise ValueError(f"{metrics_path}: its labels {metrics['labels']} do not match the model's labels {names} "
                         "(was it computed for another model?)")
    return metrics


def training_details(model_dir: Path) -> tuple[dict[str, Any] | None, TrainingRecord | None]:
    """(training_args merged with the train_* results of all_results.json, how the weights were made) of the run,
    when recorded."""
    config_path = model_dir / RUN_CONFIG_FILE
    if not config_path.is_file():
        logger.info("%s not found: the card has no training details", config_path)
        return None, None
    run_config = read_json_file(config_path)
    training_args = dict(run_config.get("training_args") or {})
    results_path = model_dir / "all_results.json"
    if results_path.is_file():
        results = read_json_file(results_path)
        training_args.update({k: v for k, v in results.items() if k.startswith("train_") or k == "epoch"})
    return training_args or None, TrainingRecord.from_run_config(run_config)


def copy_figures(search_dirs: list[Path], stage: Path) -> dict[str, str]:
    """Copy the known figures found first in ``search_dirs`` into ``stage``; return build_model_card kwargs."""
    links = {}
    for filename, argument in FIGURES.items():
        source = next((d / filename for d in search_dirs if (d / filename).is_file()), None)
        if source is None:
            logger.info("no %s beside the metrics or model: the card does not show it", filename)
            continue
        shutil.copy2(source, stage / filename)
        links[argument] = filename
    return links


def _default_dataset_name(record: TrainingRecord | None) -> str:
    """The run's dataset (builder name or folder name), else a neutral phrase."""
    return record.dataset if record is not None and record.dataset else "the evaluation set"


def write_card(args: PushArguments, model_dir: Path, stage: Path, config) -> dict[str, Any] | None:
    """Build README.md in ``stage`` (copying figures and metrics.json there); return the reported metrics."""
    names = label_names(config)
    metrics, figure_links = None, {}
    if args.metrics:
        metrics = select_metrics(args.metrics, model_dir, names)
        figure_links = copy_figures([Path(args.metrics).parent, model_dir], stage)
        shutil.copy2(args.metrics, stage / "metrics.json")
    training_args, record = training_details(model_dir)
    card = build_model_card(
        metrics, repo_id=args.repo_id, model_name=args.model_name or args.repo_id.split("/")[1],
        label_names=names, base_model=getattr(config, "backbone", None), datasets=list(args.dataset_id),
        dataset_name=args.dataset_name or _default_dataset_name(record), dataset_split=args.dataset_split,
        dataset_config=args.dataset_config, license=args.license, training_args=training_args, record=record,
        model_config=config.to_dict(), calibration=CalibrationRecord.read(model_dir), **figure_links,
    )
    card.save(stage / "README.md")
    return metrics


def _check_stage_dir(stage: Path) -> None:
    """Refuse a --local_dir that already holds files: stale files would end up beside the new ones."""
    if stage.exists() and (not stage.is_dir() or any(stage.iterdir())):
        raise ValueError(f"--local_dir {stage} already exists and is not an empty folder: choose a new or empty one")


def stage_folder(args: PushArguments, model_dir: Path, stage: Path) -> tuple[Any, Any, dict[str, Any] | None]:
    """Write everything that is uploaded into ``stage``; return (model, processor, reported metrics)."""
    check_model_folder(model_dir)
    model, processor = load_model_and_processor(model_dir)
    # The card is built first: a metrics file that does not fit the model fails before any weights are written.
    stage.mkdir(parents=True, exist_ok=True)
    metrics = write_card(args, model_dir, stage, model.config)
    save_grefel_folder(model, processor, stage)
    for name in RUN_RECORDS:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, stage / name)
    logger.info("staged %s for %s: %s", model_dir, args.repo_id, sorted(p.name for p in stage.iterdir()))
    return model, processor, metrics


# Runs in a fresh interpreter where `import grefel_hf` fails: the folder must work through remote code only.
_VALIDATION_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["grefel_hf"] = None
    import json
    import torch
    from huggingface_hub import ModelCard
    from PIL import Image
    from safetensors.torch import load_file
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    folder, work = sys.argv[1], sys.argv[2]
    face = Image.open(f"{work}/face.png")
    expected = load_file(f"{work}/expected.safetensors")["logits"]
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    if not type(model).__module__.startswith("transformers_modules."):
        sys.exit(f"the model was not loaded from the folder's remote code but from {type(model).__module__}")
    with torch.no_grad():
        logits = model(**processor(face, return_tensors="pt")).logits
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5, msg=lambda m: "logits differ: " + m)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    pipe = pipeline("image-classification", model=folder, trust_remote_code=True)
    scores = {entry["label"]: entry["score"] for entry in pipe(face, top_k=len(labels))}
    probs = expected.softmax(-1)[0].tolist()
    if sorted(scores) != sorted(labels):
        sys.exit(f"pipeline labels {sorted(scores)} differ from the config's {labels}")
    worst = max(abs(scores[name] - probs[i]) for i, name in enumerate(labels))
    if worst > 1e-4:
        sys.exit(f"pipeline scores differ from the model's probabilities by up to {worst}")
    card = ModelCard.load(f"{folder}/README.md")
    with open(f"{work}/report.json", "w") as f:
        json.dump({"model_module": type(model).__module__, "pipeline_scores": scores,
                   "card": card.data.to_dict()}, f)
    """
)


def _validation_inputs(model, processor, work: Path) -> None:
    """Write the fixed 48x48 grayscale test image and the in-process model's logits on it into ``work``."""
    face = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8), "L")
    face.save(work / "face.png")
    with torch.no_grad():
        logits = model(**processor(face, return_tensors="pt")).logits
    save_file({"logits": logits.float().contiguous()}, work / "expected.safetensors")


def check_model_index(card: dict[str, Any], metrics: dict[str, Any] | None) -> None:
    """Raise RuntimeError unless the card's model-index holds exactly the reported metrics (none without)."""
    index = card.get("model-index")
    if metrics is None:
        if index:
            raise RuntimeError("the card has a model-index although no metrics were given")
        return
    found = [(m["type"], m["value"]) for entry in index or [] for result in entry.get("results", [])
             for m in result.get("metrics", [])]
    expected = [(kind, float(metrics[key])) for key, kind, _, _ in MODEL_INDEX_METRICS if metrics.get(key) is not None]
    if found != expected:
        raise RuntimeError(f"the card's model-index {found} differs from the metrics {expected}")


def validate_staged_folder(stage: Path, model, processor, metrics: dict[str, Any] | None = None,
                           timeout: float = VALIDATION_TIMEOUT_S) -> dict[str, Any]:
    """Load ``stage`` in a fresh process without grefel_hf and check logits, pipeline and card; return its report.

    Raises:
        RuntimeError: loading or a check failed (the message ends with the subprocess's stderr).
    """
    with tempfile.TemporaryDirectory(prefix="grefel-validate-") as tmp:
        work = Path(tmp)
        _validation_inputs(model, processor, work)
        env = {**os.environ, "HF_MODULES_CACHE": str(work / "modules"), "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1"}
        try:
            run = subprocess.run([sys.executable, "-c", _VALIDATION_SCRIPT, str(stage.resolve()), str(work)],
                                 capture_output=True, text=True, env=env, cwd=work, timeout=timeout,
                                 stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"validating {stage} took longer than {timeout} s") from err
        if run.returncode != 0:
            raise RuntimeError(f"the staged folder {stage} does not load without grefel_hf (nothing was "
                               f"uploaded). Validation process stderr (tail):\n{run.stderr[-3000:]}")
        report = json.loads((work / "report.json").read_text(encoding="utf-8"))
    check_model_index(report["card"], metrics)
    logger.info("validated %s: loads through remote code, same logits, card parses", stage)
    return report


def upload_staged_folder(stage: Path, repo_id: str, *, private: bool, commit_message: str) -> str | None:
    """Create the repository (if needed) and upload ``stage``; return the commit URL."""
    try:
        create_repo(repo_id, private=private, exist_ok=True)
        commit = upload_folder(repo_id=repo_id, folder_path=str(stage), commit_message=commit_message,
                               ignore_patterns=UPLOAD_IGNORE_PATTERNS)
    except Exception as err:  # HTTP, auth, YAML validation: report them as one clear failure
        raise RuntimeError(f"uploading {stage} to https://huggingface.co/{repo_id} failed: {err}") from err
    url = getattr(commit, "commit_url", None)
    logger.info("uploaded %s to https://huggingface.co/%s (%s)", stage, repo_id, url)
    return url


def publish(args: PushArguments) -> PublishResult:
    """Stage, validate and (unless ``args.local_dir`` is set) upload a trained GReFEL model.

    Raises:
        FileNotFoundError: the model folder or a named file is missing.
        ValueError: bad arguments, not a GReFEL model, or metrics that do not fit the model.
        RuntimeError: offline mode or no token (before any work), validation or upload failed.
    """
    check_repo_id(args.repo_id)
    upload = args.local_dir is None
    if upload:
        check_push_possible()
    else:
        _check_stage_dir(Path(args.local_dir))
    if args.metrics and not Path(args.metrics).is_file():
        raise FileNotFoundError(f"metrics file not found: {args.metrics}")
    model_dir = resolve_model_dir(args.model_dir)
    if not upload:
        stage = Path(args.local_dir)
        model, processor, metrics = stage_folder(args, model_dir, stage)
        validate_staged_folder(stage, model, processor, metrics)
        return PublishResult(repo_id=args.repo_id, uploaded=False, staged_dir=stage)
    with tempfile.TemporaryDirectory(prefix="grefel-push-") as tmp:
        stage = Path(tmp) / args.repo_id.split("/")[1]
        model, processor, metrics = stage_folder(args, model_dir, stage)
        validate_staged_folder(stage, model, processor, metrics)
        url = upload_staged_folder(stage, args.repo_id, private=args.private, commit_message=args.commit_message)
    return PublishResult(repo_id=args.repo_id, uploaded=True, commit_url=url)


__all__ = [
    "FIGURES", "UPLOAD_IGNORE_PATTERNS", "PublishResult", "PushArguments", "check_model_folder", "check_model_index",
    "check_push_possible", "check_repo_id", "hub_offline", "publish", "resolve_model_dir", "select_metrics",
    "stage_folder", "upload_staged_folder", "validate_staged_folder",
]
