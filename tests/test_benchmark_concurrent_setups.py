"""The side-by-side protocol of the CPU-budget benchmark (benchmarks/concurrent_setups.py)."""

import argparse
import os
import sys

import pytest
from conftest import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
from concurrent_setups import child_command, run_concurrently, split_cpus  # noqa: E402
from fer_cpu_budget import parse_arguments, parse_cpu_list  # noqa: E402

from grefel_hf.training.arguments import DataArguments  # noqa: E402

# A stand-in for fer_cpu_budget.py that reports what it was given: the CPUs it runs on, its setup and its budget.
_CHILD = """
import argparse, json, os, sys
parser = argparse.ArgumentParser()
for flag in ("--setups", "--budget_minutes", "--cpus", "--data_args", "--output", "--concurrent", "--seed"):
    parser.add_argument(flag)
args = parser.parse_args()
os.sched_setaffinity(0, [int(c) for c in args.cpus.split(",")])
if args.setups == "broken":
    sys.exit(3)
result = {"setup": args.setups, "budget_minutes": float(args.budget_minutes), "seed": args.seed,
          "affinity": sorted(os.sched_getaffinity(0)), "dataset": json.loads(args.data_args)["dataset"]}
with open(args.output, "w") as f:
    json.dump({"results": [result]}, f)
"""


def test_cpus_are_split_into_equal_disjoint_groups():
    assert split_cpus([3, 1, 0, 2], 2) == [[0, 1], [2, 3]]
    assert split_cpus([0, 1, 2], 2) == [[0], [1]]  # the odd core stays idle: each setup gets the same share
    with pytest.raises(ValueError, match="cannot give 3 setups a CPU core each"):
        split_cpus([0, 1], 3)


RECIPE = os.path.join(REPO_ROOT, "recipes", "grefel_cpu_fer2013.yaml")


def test_a_child_command_line_overrides_the_parents_options():
    parent = [RECIPE, "--dataset", "ferplus", "--setups", "grefel", "plain", "--budget_minutes", "15", "--concurrent",
              "1", "--output", "pair.json", "--seed", "3"]
    data_args = DataArguments(dataset="/tmp/prepared", eval_split="validation")
    command = child_command("fer_cpu_budget.py", parent, "plain", [1], 30.0, "/tmp/plain.json", data_args)
    assert command[:2] == [sys.executable, "fer_cpu_budget.py"]
    args = parse_arguments(command[2:])
    assert (args.recipe_data_args.dataset, args.setups, args.budget_minutes) == ("ferplus", ["plain"], 30.0)
    assert args.training_args.seed == 3 and args.recipe_argv[0] == RECIPE
    assert (args.concurrent, args.cpus, args.output) == (0, [1], "/tmp/plain.json")
    assert DataArguments(**args.data_args) == data_args


def test_the_parent_refuses_a_single_setup_side_by_side_and_bad_cpu_lists():
    with pytest.raises(SystemExit):
        parse_arguments([RECIPE, "--concurrent", "1", "--setups", "grefel"])
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated CPU ids"):
        parse_cpu_list("0;1")
    assert parse_cpu_list("0,1") == [0, 1]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPU cores to run two setups side by side")
def test_setups_run_side_by_side_pinned_with_the_budget_scaled_by_their_share(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    cpus = sorted(os.sched_getaffinity(0))
    results, protocol = run_concurrently(str(script), ["--seed", "5"], ["grefel", "plain"], 15.0,
                                         DataArguments(dataset="fer2013"), tmp_path / "work")
    groups = split_cpus(cpus, 2)
    assert [r["setup"] for r in results] == ["grefel", "plain"]
    assert [r["affinity"] for r in results] == groups and [r["cpus"] for r in results] == groups
    share = len(groups[0])
    assert all(r["budget_minutes"] == pytest.approx(15.0 * len(cpus) / share) for r in results)
    assert protocol["core_minutes_per_setup"] == pytest.approx(15.0 * len(cpus))  # as 15 minutes on every core
    assert all(r["seed"] == "5" and r["dataset"] == "fer2013" for r in results)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPU cores to run two setups side by side")
def test_a_failed_setup_names_its_log(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    with pytest.raises(RuntimeError, match=r"the broken run failed \(exit code 3\); see .*concurrent-broken.log"):
        run_concurrently(str(script), [], ["grefel", "broken"], 1.0, DataArguments(dataset="fer2013"), tmp_path)
