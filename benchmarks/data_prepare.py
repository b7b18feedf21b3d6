"""Time to prepare the real FER2013 and FER+ data, and the synthetic set, with the dataset_scripts builders.

Unpacks the shared archives into a scratch folder, then builds every dataset into an empty datasets cache
(cold) and loads it again (warm, from the cache). Prints a table and writes JSON (not a test; timings are
never asserted anywhere).

    python benchmarks/data_prepare.py [--data_dir ../shared/data]
        [--output benchmarks/results/data_pipeline/data_prepare.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import datasets

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from dataset_scripts import load_fer2013, load_ferplus, load_synthetic  # noqa: E402


def timed(fn: Callable[[], datasets.DatasetDict]) -> tuple[float, datasets.DatasetDict]:
    """Seconds taken by `fn()` and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def measure(name: str, fn: Callable[[str], datasets.DatasetDict], scratch: Path) -> dict:
    """Build into a fresh cache (cold), then load again from it (warm)."""
    cache = scratch / f"cache-{name}"
    cold, dsd = timed(lambda: fn(str(cache)))
    warm, _ = timed(lambda: fn(str(cache)))
    sizes = {split: len(ds) for split, ds in dsd.items()}
    total = sum(sizes.values())
    arrow_mb = sum(os.path.getsize(f["filename"]) for ds in dsd.values() for f in ds.cache_files) / 2**20
    return {
        "dataset": name,
        "splits": sizes,
        "cold_s": round(cold, 2),
        "warm_s": round(warm, 3),
        "images_per_s": round(total / cold),
        "arrow_mb": round(arrow_mb, 1),
    }


def unpack(archive: Path, target: Path) -> float:
    """Extract `archive` into `target`; returns the seconds it took."""
    start = time.perf_counter()
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return time.perf_counter() - start


def main() -> int:
    """Run the measurements; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--output",
                        default=str(REPO_ROOT / "benchmarks" / "results" / "data_pipeline" / "data_prepare.json"))
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    datasets.disable_progress_bars()
    results = []
    with tempfile.TemporaryDirectory(prefix="data-prepare-") as tmp:
        scratch = Path(tmp)
        results.append(measure("synthetic (2500/500/500)", lambda c: load_synthetic(cache_dir=c), scratch))
        if not data_dir.is_dir():
            print(f"real data not found at {data_dir}: only the synthetic set was measured")
        else:
            fer_s = unpack(data_dir / "fer2013_kaggle_trainval.tar.gz", scratch / "fer2013")
            ferplus_s = unpack(data_dir / "ferplus_trainval.tar.gz", scratch / "ferplus")
            print(f"unpacked FER2013 in {fer_s:.1f} s, FER+ in {ferplus_s:.1f} s")
            results.append(
                measure(
                    "fer2013 (Kaggle folders)",
                    lambda c: load_fer2013(str(scratch / "fer2013"), cache_dir=c),
                    scratch,
                )
            )
            for mode in ("majority", "crossentropy"):
                results.append(
                    measure(
                        f"ferplus ({mode})",
                        lambda c, m=mode: load_ferplus(str(scratch / "ferplus"), cache_dir=c, label_mode=m),
                        scratch,
                    )
                )
    print(f"{'dataset':28} {'splits':48} {'cold s':>7} {'warm s':>7} {'img/s':>7} {'MB':>6}")
    for r in results:
        print(
            f"{r['dataset']:28} {json.dumps(r['splits']):48} {r['cold_s']:7.2f} {r['warm_s']:7.3f} "
            f"{r['images_per_s']:7d} {r['arrow_mb']:6.1f}"
        )
    report = {
        "command": "python benchmarks/data_prepare.py",
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "datasets_version": datasets.__version__,
        "results": results,
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(report, handle, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
