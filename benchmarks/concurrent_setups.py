"""Run fer_cpu_budget.py's setups at the same time, each in its own process on its own CPU cores.

Run one after the other, two setups meet different moments of a shared machine: on these machines a step has taken
0.37 s in one run and 0.48 s in the next, and once a whole run went at half speed. Run side by side, each pinned to
its share of the cores (`os.sched_setaffinity`), both meet the same moments. Each setup then trains for the budget
scaled by the share it gets, so it gets the same core-minutes as a run on every core: with 2 cores and 2 setups, each
gets 1 core for 2 × `--budget_minutes`, the CPU time of `--budget_minutes` on both cores, and the pair takes as long
as it would one after the other.

The parent prepares the data once, so that the children only read it; each child is fer_cpu_budget.py itself with
the parent's command line plus `--setups <one> --budget_minutes <scaled> --cpus <its cores> --data_args <prepared>
--concurrent 0 --output <its file>` (argparse keeps the last value of a repeated option).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path


def split_cpus(cpus: list[int], parts: int) -> list[list[int]]:
    """Split the CPU ids into `parts` equal, disjoint groups (the remainder stays idle); at least one each."""
    if parts < 1 or len(cpus) < parts:
        raise ValueError(f"cannot give {parts} setups a CPU core each: this process may use {len(cpus)} ({cpus})")
    size = len(cpus) // parts
    return [sorted(cpus)[i * size:(i + 1) * size] for i in range(parts)]


def child_command(script: str, argv: list[str], setup: str, cpus: list[int], budget_minutes: float, output: Path,
                  data_args) -> list[str]:
    """The command line of the child that trains `setup` on `cpus`."""
    return [sys.executable, script, *argv, "--concurrent", "0", "--setups", setup,
            "--budget_minutes", repr(budget_minutes), "--cpus", ",".join(map(str, cpus)),
            "--data_args", json.dumps(asdict(data_args)), "--output", str(output)]


def run_concurrently(script: str, argv: list[str], setups: list[str], budget_minutes: float, data_args,
                     work_dir: Path) -> tuple[list[dict], dict]:
    """Train every setup at once, each in its own pinned process; return their results (in `setups` order) and a
    description of the protocol for the report. Raises RuntimeError, naming the child's log, if one fails."""
    available = sorted(os.sched_getaffinity(0))
    groups = split_cpus(available, len(setups))
    budget_each = budget_minutes * len(available) / len(groups[0])
    work_dir.mkdir(parents=True, exist_ok=True)
    children = []
    for setup, cpus in zip(setups, groups, strict=True):
        output, log = work_dir / f"concurrent-{setup}.json", work_dir / f"concurrent-{setup}.log"
        output.unlink(missing_ok=True)
        with open(log, "w") as handle:
            command = child_command(script, argv, setup, cpus, budget_each, output, data_args)
            children.append((setup, output, log, subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)))
    results = []
    for setup, output, log, process in children:
        if process.wait() != 0 or not output.is_file():
            raise RuntimeError(f"the {setup} run failed (exit code {process.returncode}); see {log}")
        (result,) = json.loads(output.read_text())["results"]
        results.append({**result, "cpus": groups[setups.index(setup)]})
    protocol = {"mode": "concurrent", "cpus": dict(zip(setups, groups, strict=True)),
                "budget_minutes_per_setup": budget_each, "core_minutes_per_setup": budget_each * len(groups[0]),
                "available_cpus": available}
    return results, protocol


__all__ = ["child_command", "run_concurrently", "split_cpus"]
