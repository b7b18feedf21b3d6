"""Every README code block marked runnable (`<!-- runnable -->` on the line before it) runs as written, offline, in a
scratch folder that sees the repository's `examples/`, `recipes/` and `train_hf.py`."""

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

MARKER = "<!-- runnable -->"
_BLOCK = re.compile(r"<!-- runnable -->\n```(\w+)\n(.*?)\n```", re.DOTALL)


def runnable_blocks(path: str) -> list[tuple[str, str]]:
    """(language, code) of every block marked runnable, in order; an orphan marker is an error."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    blocks = _BLOCK.findall(text)
    if len(blocks) != text.count(MARKER):
        raise ValueError(f"{path}: a {MARKER!r} marker is not directly followed by a fenced code block")
    return blocks


BLOCKS = runnable_blocks(os.path.join(REPO_ROOT, "README.md"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme")
    for name in ("examples", "recipes", "train_hf.py", "push_to_hub.py"):
        os.symlink(os.path.join(REPO_ROOT, name), folder / name)
    return folder


def test_the_readme_has_runnable_blocks():
    assert len(BLOCKS) >= 5 and {language for language, _ in BLOCKS} == {"bash", "python"}


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_a_runnable_readme_block_runs_as_written(index, workdir):
    language, code = BLOCKS[index]
    script = workdir / f"block{index}.{'sh' if language == 'bash' else 'py'}"
    script.write_text(code + "\n")
    command = ["bash", "-e", str(script)] if language == "bash" else [sys.executable, str(script)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    run = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"README block {index} ({language}) failed:\n{code}\n{run.stderr[-3000:]}"


def test_the_quickstart_output_shown_is_what_the_bundled_model_gives(workdir):
    """The README's first example shows real output: the row it prints is the one `grefel-hf predict` writes."""
    import csv

    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    shown = re.search(r"```text\n(source,frame,.*)\n(examples/astronaut\.jpg,.*)\n```", text)
    assert shown is not None, "the README's quickstart output block was not found"
    header, row = (line.rstrip(",.").split(",") for line in shown.groups())
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "grefel_hf.cli", "predict", "examples/astronaut.jpg", "--output",
                          "quickstart.csv", "--no_progress"], cwd=workdir, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(workdir / "quickstart.csv", newline="") as handle:
        (written,) = list(csv.DictReader(handle))
    for name, value in zip(header, row, strict=False):
        if name == "..." or value == "...":
            continue
        if name in ("score", "reliability") or name.startswith("prob_"):
            assert float(written[name]) == pytest.approx(float(value), abs=2e-4), name
        else:
            assert written[name] == value, name
