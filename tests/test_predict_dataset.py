"""`grefel_hf.predict_dataset` (issue 37): the rows of `grefel-hf predict`, made by `datasets` from a `Dataset`
(in one process or with `num_proc`) or from its streaming `IterableDataset`."""

import csv

import datasets
import numpy as np
import pytest
from inference_support import astronaut, chelsea, save_tiny_model
from PIL import Image

from grefel_hf import predict_dataset
from grefel_hf.cli import main as cli_main
from grefel_hf.inference.dataset_predict import FaceRows
from grefel_hf.inference.writers import columns

LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
NUMBERS = ["score", "reliability", *(f"prob_{label}" for label in LABELS)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A model, six photos (one with two faces, one without), and `grefel-hf predict`'s rows for them."""
    root = tmp_path_factory.mktemp("dataset")
    model = save_tiny_model(root / "model")
    paths = []
    for i in range(4):
        paths.append(root / f"p{i}.jpg")
        Image.fromarray(np.roll(astronaut(), 11 * i, axis=1)).resize((256, 256)).save(paths[-1])
    paths.append(root / "cat.png")
    Image.fromarray(chelsea()).save(paths[-1])
    paths.append(root / "two.png")
    canvas = Image.new("RGB", (700, 360), (120, 120, 120))
    canvas.paste(Image.fromarray(astronaut()).resize((300, 300)), (10, 30))
    canvas.paste(Image.fromarray(astronaut()).resize((340, 340)), (350, 10))
    canvas.save(paths[-1])
    out = root / "rows.csv"
    assert cli_main(["predict", *map(str, paths), "--model", str(model), "--output", str(out), "--no_progress"]) == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 7 and [row["label"] for row in rows].count("no_face") == 1
    return model, paths, rows


def _dataset(paths):
    data = {"image": [str(p) for p in paths], "name": [p.name for p in paths]}
    return datasets.Dataset.from_dict(data).cast_column("image", datasets.Image())


def _same_as_predict(rows, expected, paths):
    """Row for row: the example, box and label exactly; the numbers to float rounding (batches differ)."""
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        assert paths[row["index"]].name == row["name"] == want["source"].rsplit("/", 1)[-1]
        for name in ("box_x", "box_y", "box_w", "box_h"):
            assert row[name] == (None if want[name] == "" else int(want[name]))
        assert row["label"] == want["label"]
        for name in NUMBERS:
            if want[name] == "":
                assert row[name] is None
            else:
                assert row[name] == pytest.approx(float(want[name]), abs=1e-5)


def test_a_dataset_and_its_streaming_version_give_predicts_rows(photos, tmp_path):
    model, paths, expected = photos
    dataset = _dataset(paths)
    rows = predict_dataset(dataset, model=model, keep_columns=["name"], batch_size=4)
    assert isinstance(rows, datasets.Dataset)
    assert rows.column_names == ["index", *columns(LABELS)[2:], "name"]
    _same_as_predict(list(rows), expected, paths)
    streamed = predict_dataset(dataset.to_iterable_dataset(), model=model, keep_columns=["name"], batch_size=3)
    assert isinstance(streamed, datasets.IterableDataset)
    _same_as_predict(list(streamed), expected, paths)
    rows.to_parquet(tmp_path / "rows.parquet")
    again = datasets.load_dataset("parquet", data_files=str(tmp_path / "rows.parquet"), split="train")
    assert list(again) == list(rows)


def test_num_proc_workers_give_the_same_rows_in_order(photos):
    model, paths, expected = photos
    rows = predict_dataset(_dataset(paths), model=model, keep_columns=["name"], batch_size=2, num_proc=2)
    _same_as_predict(list(rows), expected, paths)


def test_the_map_function_can_be_used_directly_and_undecoded_images_work(photos):
    model, paths, expected = photos
    dataset = _dataset(paths).cast_column("image", datasets.Image(decode=False))
    rows = FaceRows(model, keep_columns=["name"])
    mapped = dataset.map(rows, batched=True, with_indices=True, remove_columns=dataset.column_names,
                         features=rows.features(dataset.features))
    _same_as_predict(list(mapped), expected, paths)


def test_bad_calls_are_one_clear_error(photos):
    model, paths, _ = photos
    dataset = _dataset(paths)
    with pytest.raises(ValueError, match=r"the dataset has no column 'picture'; its columns are \['image', 'name'\]"):
        predict_dataset(dataset, image_column="picture", model=model)
    with pytest.raises(ValueError, match="num_proc works with a Dataset; an IterableDataset streams"):
        predict_dataset(dataset.to_iterable_dataset(), model=model, num_proc=2)
    with pytest.raises(ValueError, match=r"keep_columns \['index'\] would clash"):
        predict_dataset(dataset.rename_column("name", "index"), model=model, keep_columns=["index"])
