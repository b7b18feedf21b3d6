"""`grefel_hf.predict_dataset`: the expressions of every face in a 🤗 `datasets` dataset, as a dataset of rows.

It is one batched `map` (`FaceRows`) built on the facial-expression-recognition pipeline that `grefel-hf predict`
uses, so a photo gets the same rows: one per face (box, label, score, reliability, prob_<label>...), or one
`no_face` row, with `index`, the position of its example in the dataset, instead of `source` and `frame`. It runs
wherever `datasets` runs: a `Dataset` (with `num_proc` worker processes, each loading the model once, and each on
its own GPU when there are several) or an `IterableDataset` (streamed: rows come as they are made), and the result
saves as Parquet (`rows.to_parquet(...)`). The model is loaded once per process and kept for later calls.

`Dataset.map` caches results in the cache files of datasets read from files; the function's fingerprint includes
the model files' sizes and times, so another model (or a model saved again) is never answered from the cache.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..pipeline_grefel import FaceInput
from ..pretrained import resolve_model_path
from .backends import load_face_pipeline
from .writers import LANDMARK_COLUMNS, columns, prediction_rows

DROPPED_COLUMNS = ("source", "frame")
"""`grefel-hf predict`'s columns that a dataset's rows do not have (`index` says which example a row is of)."""

INT_COLUMNS = ("box_x", "box_y", "box_w", "box_h")

_PIPELINES: dict[tuple, Any] = {}
"""The pipelines loaded in this process, by model and settings (and process id, so that a forked worker loads its
own)."""


def model_stamp(path: Path) -> list[tuple[str, int, int]]:
    """(name, size, modification time) of a model's files: what tells one saved model from another."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(os.fspath(p.relative_to(path) if path.is_dir() else p.name), p.stat().st_size, p.stat().st_mtime_ns)
            for p in files]


def _image(value: Any) -> Any:
    """A dataset's image cell as the pipeline takes it: a decoded image, a path, or an undecoded {"bytes",
    "path"} cell."""
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            from PIL import Image

            return Image.open(io.BytesIO(value["bytes"]))
        return value.get("path")
    return value


class FaceRows:
    """The batched map function of `predict_dataset`: a batch of examples → their faces' rows.

    Use it as `dataset.map(rows, batched=True, with_indices=True, remove_columns=dataset.column_names,
    features=rows.features())` (`with_rank=True` too with `num_proc`, to spread processes over GPUs).

    Args:
        model: a saved model folder, an exported .onnx file or a bundled model's name (None: the default).
        image_column: the column of images (decoded images, paths, or undecoded {"bytes", "path"} cells).
        keep_columns: columns of the dataset copied onto each of an example's rows.
        landmarks: also the detection score and five landmark columns.
        face_batch_size: faces per forward pass; backend, device: as `grefel-hf predict`'s.
        onnx_threads: ONNX Runtime's CPU threads per process (None: its default).
        pipeline_options: the pipeline's face options (face_detector, detection_size, margin, ...), min_score,
            min_reliability, tta_views, tta_shift.
    """

    def __init__(self, model: str | Path | None = None, image_column: str = "image", keep_columns: Sequence[str] = (),
                 landmarks: bool = False, face_batch_size: int = 32, backend: str = "auto", device: str = "auto",
                 onnx_threads: int | None = None, **pipeline_options):
        self.model_path = Path(resolve_model_path(model))
        self.stamp = model_stamp(self.model_path)
        self.image_column, self.keep_columns, self.landmarks = image_column, list(keep_columns), landmarks
        self.face_batch_size, self.backend, self.device, self.onnx_threads = face_batch_size, backend, device, \
            onnx_threads
        self.pipeline_options = pipeline_options
        self.labels = self.pipeline().model.config.id2label
        self.labels = [self.labels[i] for i in range(len(self.labels))]

    def pipeline(self, rank: int | None = None):
        """This process's pipeline (loaded on first use; with a `rank` and several GPUs, on GPU `rank`)."""
        if rank is not None and self.device in ("auto", "cuda") and torch.cuda.device_count() > 1:
            torch.cuda.set_device(rank % torch.cuda.device_count())
        key = (os.getpid(), os.fspath(self.model_path), self.backend, self.device, self.onnx_threads,
               self.pipeline_options.get("tta_views"), self.pipeline_options.get("tta_shift"))
        if key not in _PIPELINES:
            if any(loaded_in != key[0] for loaded_in, *_ in _PIPELINES):  # a forked worker: the parent's
                torch.set_num_threads(self.onnx_threads or 1)  # thread pool would hang here
            tta = {name: self.pipeline_options[name] for name in ("tta_views", "tta_shift")
                   if name in self.pipeline_options}
            _PIPELINES[key] = load_face_pipeline(self.model_path, self.backend, self.device, self.onnx_threads,
                                                 **tta)
        return _PIPELINES[key]

    @property
    def columns(self) -> list[str]:
        """The rows' columns: index, predict's columns without source and frame, then `keep_columns`."""
        kept = [name for name in columns(self.labels, self.landmarks) if name not in DROPPED_COLUMNS]
        return ["index", *kept, *self.keep_columns]

    def features(self, source_features=None):
        """The rows' `datasets.Features` (the kept columns' from `source_features`, the input's); None when the
        input's are not known (a stream of unknown columns), for `datasets` to infer."""
        from datasets import Features, Value

        if self.keep_columns and (source_features is None or any(n not in source_features for n in
                                                                 self.keep_columns)):
            return None
        features = {}
        for name in self.columns:
            if name in self.keep_columns:
                features[name] = source_features[name]
            elif name == "index":
                features[name] = Value("int64")
            else:
                features[name] = Value("int32" if name in INT_COLUMNS else "string" if name == "label" else
                                       "float64")
        return Features(features)

    def __call__(self, batch: dict[str, list], indices: list[int], rank: int | None = None) -> dict[str, list]:
        settings = {name: value for name, value in self.pipeline_options.items()
                    if name not in ("tta_views", "tta_shift")}
        inputs = [FaceInput(_image(value), index) for value, index in zip(batch[self.image_column], indices,
                                                                          strict=True)]
        results = self.pipeline(rank).image_faces(inputs, batch_size=self.face_batch_size, num_workers=0,
                                                  **settings)
        out: dict[str, list] = {name: [] for name in self.columns}
        for position, result in enumerate(results):
            for row in prediction_rows("", None, result, self.labels, self.landmarks):
                out["index"].append(result.key)
                for name in self.columns[1:len(self.columns) - len(self.keep_columns)]:
                    out[name].append(row[name])
                for name in self.keep_columns:
                    out[name].append(batch[name][position])
        return out


def _check_columns(dataset, image_column: str, keep_columns: Sequence[str]) -> None:
    names = dataset.column_names
    if names is None:
        return  # a stream of unknown columns: a missing one shows when the first batch is read
    for name in (image_column, *keep_columns):
        if name not in names:
            raise ValueError(f"the dataset has no column {name!r}; its columns are {names}")
    clash = [name for name in keep_columns if name in ("index", *LANDMARK_COLUMNS) or name in INT_COLUMNS]
    if clash:
        raise ValueError(f"keep_columns {clash} would clash with the rows' own columns; rename them first")


def predict_dataset(dataset, image_column: str = "image", model: str | Path | None = None, *, batch_size: int = 64,
                    num_proc: int | None = None, keep_columns: Sequence[str] = (), landmarks: bool = False,
                    face_batch_size: int = 32, backend: str = "auto", device: str = "auto",
                    **pipeline_options):
    """The rows of every face in `dataset` (a `datasets.Dataset` or `IterableDataset`), as a dataset of the same
    kind: see the module docstring and `FaceRows` for the columns and options.

    Args:
        batch_size: examples per `map` batch (their faces are classified `face_batch_size` at a time).
        num_proc: worker processes (a `Dataset` only; the CPU cores are shared out among them).

    Raises:
        ValueError: a column the dataset does not have, `num_proc` with an `IterableDataset`, a bad option.
    """
    from datasets import IterableDataset

    streaming = isinstance(dataset, IterableDataset)
    if streaming and num_proc not in (None, 1):
        raise ValueError("num_proc works with a Dataset; an IterableDataset streams through one process (share it "
                         "out with datasets.distributed.split_dataset_by_node, one process per node or GPU)")
    _check_columns(dataset, image_column, keep_columns)
    threads = None if not num_proc or num_proc < 2 else max(1, (os.cpu_count() or 1) // num_proc)
    rows = FaceRows(model, image_column, keep_columns, landmarks, face_batch_size, backend, device, threads,
                    **pipeline_options)
    source = dataset.select_columns([image_column, *keep_columns])
    features = rows.features(dataset.features)
    common = {"batched": True, "batch_size": batch_size, "with_indices": True,
              "remove_columns": [image_column, *keep_columns], "features": features}
    if streaming:
        return source.map(rows, **common)
    return source.map(rows, with_rank=True, num_proc=num_proc, **common)


__all__ = ["DROPPED_COLUMNS", "FaceRows", "model_stamp", "predict_dataset"]
