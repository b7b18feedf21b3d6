"""Large jobs (issue 37): memory of `grefel-hf predict` as its inputs grow, and photos/s in one and two processes
(benchmark, not a test).

Studies (one subcommand each; figures printed and written as JSON under benchmarks/results/large_jobs/):
- `memory`: the peak resident memory (maxrss) of `grefel-hf predict` over folders of 1,000 and 10,000 small photos
  (160 px JPEGs, one face each; the bundled model in ONNX Runtime; `--num_workers 0`, so that the one process holds
  everything), with the code as it is and, given `--baseline_commit`, with that commit's code (taken out with
  `git archive`), in the same run.
- `processes`: photos/s of `grefel-hf predict` in one process and under `accelerate launch --num_processes 2` (CPU,
  gloo), each with its default workers and threads, the two alternated `--repeats` times; photos/s once started
  (a run on all the photos less a run on the first `--startup_photos`, so that the launcher's and each process's
  start-up are left out) and with the start-up. The ratio of the two is the figure.
- `gpu`: photos/s of one process on a CUDA device at `--batch_size 64` (the bundled model in PyTorch), once
  started; refuses to run without a CUDA device.

Usage (from the repository root):
    python benchmarks/large_jobs.py memory --baseline_commit 4f0749a
    python benchmarks/large_jobs.py processes
    python benchmarks/large_jobs.py gpu
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "large_jobs"
LAUNCH_TWO = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]


def make_photos(folder: Path, count: int, side: int = 160) -> Path:
    """`count` JPEGs of the astronaut (scikit-image), sixteen different shifts, in one folder."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    variants = []
    for shift in range(16):
        buffer = BytesIO()
        Image.fromarray(np.roll(data.astronaut(), 7 * shift, axis=1)).resize((side, side)).save(buffer, "JPEG",
                                                                                              quality=90)
        variants.append(buffer.getvalue())
    for i in range(count):
        (folder / f"p{i:06d}.jpg").write_bytes(variants[i % 16])
    return folder


def measured(argv: list[str], cwd: Path, env: dict | None = None) -> dict:
    """Run a command; its wall time, exit status and peak resident memory (its own and its waited-for children's
    largest), its output in files beside."""
    log = cwd / "log.txt"
    start = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
                                   stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{argv} failed ({code}):\n{log.read_text()[-3000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def predict_argv(folder: Path, output: Path, *extra: str) -> list[str]:
    return ["-m", "grefel_hf.cli", "predict", str(folder), "--output", str(output), "--no_progress", "--overwrite",
            *extra]


def baseline_code(commit: str, into: Path) -> Path:
    """The grefel_hf package of `commit`, extracted with `git archive` (nothing in the checkout changes)."""
    archive = subprocess.run(["git", "archive", commit, "grefel_hf"], cwd=REPO, check=True, capture_output=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def memory_study(args, work: Path) -> dict:
    codes = {"current": None}
    if args.baseline_commit:
        codes[f"baseline {args.baseline_commit}"] = baseline_code(args.baseline_commit, work / "baseline")
    runs = []
    for count in args.counts:
        folder = make_photos(work / f"photos_{count}", count)
        for code, path in codes.items():
            env = {} if path is None else {"PYTHONPATH": str(path)}
            out = work / f"rows_{count}.csv"
            result = measured([sys.executable, *predict_argv(folder, out, "--num_workers", "0")], work, env)
            rows = out.read_bytes().count(b"\n") - 1
            runs.append({"inputs": count, "code": code, **result, "rows": rows,
                         "photos_per_s": round(count / result["wall_s"], 1)})
            print(f"{count:>7} inputs  {code:<22} peak {result['peak_rss_mib']:8.1f} MiB  "
                  f"{result['wall_s']:7.1f} s  {rows} rows", flush=True)
    return {"runs": runs}


def _rows(path: Path) -> list[tuple]:
    with open(path, newline="") as handle:
        return [(r["source"], r["box_x"], r["label"]) for r in csv.DictReader(handle)]


def processes_study(args, work: Path) -> dict:
    folder = make_photos(work / "photos", args.photos)
    small = work / "startup"
    small.mkdir()
    for path in sorted(folder.iterdir())[:args.startup_photos]:
        (small / path.name).write_bytes(path.read_bytes())
    commands = {"1 process": [sys.executable], "2 processes (accelerate launch)": LAUNCH_TWO}
    walls: dict[str, dict[str, list[float]]] = {name: {"all": [], "startup": []} for name in commands}
    for repeat in range(args.repeats):
        for name, prefix in commands.items():
            for part, photos in (("all", folder), ("startup", small)):
                out = work / f"{part}_{len(walls[name][part])}_{prefix is LAUNCH_TWO}.csv"
                walls[name][part].append(measured([*prefix, *predict_argv(photos, out)], work)["wall_s"])
            print(f"repeat {repeat}: {name}: {walls[name]['all'][-1]} s for {args.photos} photos, "
                  f"{walls[name]['startup'][-1]} s for {args.startup_photos}", flush=True)
    one, two = (sorted(work.glob(f"all_*_{flag}.csv"))[0] for flag in (False, True))
    assert _rows(one) == _rows(two), "the two runs found other faces or labels"
    figures = {}
    for name, times in walls.items():
        started = statistics.median(times["all"]) - statistics.median(times["startup"])
        figures[name] = {"walls_s": times, "photos_per_s_once_started":
                         round((args.photos - args.startup_photos) / started, 2),
                         "photos_per_s_with_startup": round(args.photos / statistics.median(times["all"]), 2)}
    names = list(figures)
    ratio = {key: round(figures[names[1]][key] / figures[names[0]][key], 2)
             for key in ("photos_per_s_once_started", "photos_per_s_with_startup")}
    print(json.dumps({name: {k: v for k, v in f.items() if k != "walls_s"} for name, f in figures.items()}, indent=1))
    print("2 processes / 1 process:", ratio)
    return {"photos": args.photos, "startup_photos": args.startup_photos, "figures": figures,
            "ratio_two_over_one": ratio, "same_faces_and_labels": True}


def gpu_study(args, work: Path) -> dict:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: the gpu study needs one")
    folder, small = make_photos(work / "photos", args.photos), make_photos(work / "startup", args.startup_photos)
    options = ["--device", "cuda", "--batch_size", str(args.batch_size)]
    walls = {"all": [], "startup": []}
    for _ in range(args.repeats):
        for part, photos in (("all", folder), ("startup", small)):
            out = work / f"{part}.csv"
            walls[part].append(measured([sys.executable, *predict_argv(photos, out, *options)], work)["wall_s"])
    started = statistics.median(walls["all"]) - statistics.median(walls["startup"])
    figure = round((args.photos - args.startup_photos) / started, 1)
    print(f"{torch.cuda.get_device_name()}: {figure} photos/s once started at batch {args.batch_size}")
    return {"device": torch.cuda.get_device_name(), "batch_size": args.batch_size, "walls_s": walls,
            "photos_per_s_once_started": figure}


STUDIES = {"memory": memory_study, "processes": processes_study, "gpu": gpu_study}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", choices=STUDIES)
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000], help="memory: inputs per run")
    parser.add_argument("--baseline_commit", default=None, help="memory: also run this commit's code")
    parser.add_argument("--photos", type=int, default=None,
                        help="processes, gpu: photos per run (default 400 on the CPU, 4000 on a GPU)")
    parser.add_argument("--startup_photos", type=int, default=20, help="the short run that measures start-up")
    parser.add_argument("--repeats", type=int, default=2, help="processes, gpu: runs of each configuration")
    parser.add_argument("--batch_size", type=int, default=64, help="gpu: faces per forward pass")
    parser.add_argument("--output", default=None, help="the JSON file (default: results/large_jobs/<study>.json)")
    args = parser.parse_args(argv)
    if args.photos is None:
        args.photos = 4000 if args.study == "gpu" else 400
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="large-jobs-") as work:
        result = STUDIES[args.study](args, Path(work))
    record = {"study": args.study, "command": "python benchmarks/large_jobs.py " + " ".join(sys.argv[1:]),
              "commit": commit, "cpu_count": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in load],
              "finished": time.strftime("%Y-%m-%d %H:%M"), **result}
    output = Path(args.output) if args.output else RESULTS / f"{args.study}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
