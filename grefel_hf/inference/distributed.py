"""`grefel-hf predict` over several processes, GPUs or machines: `accelerate launch -m grefel_hf.cli predict ...`.

Under a launcher (`accelerate launch`, `torchrun`, `mpirun`) each process joins accelerate's `PartialState`. The
main process checks every path and lists the inputs once (`targets.check_targets`), counting their work units, and
sends the verdict and the total to the others. Each process then lists the inputs itself, takes its stretch of
them (`shards`: photos, and the frames of long videos) and writes its part (`parts`) exactly as a one-process run
writes its output: rows flushed per image or frame, a summary at the end, SIGINT and SIGTERM stopping it at the
next image or frame, `--resume` continuing it. When every process is done, the main process joins the parts into
the output (the rows a single process writes, in input order), makes the video summaries and plots from the
merged rows, and writes the run summary, which counts every file once. If a signal stopped any process, nothing is
merged: the parts stay, the summary says what was done, and the same command with `--resume` (and as many
processes) finishes each part and merges them.

The main process needs every part: on several machines, `--output` must be on a folder they all share.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import Any

import torch

from .backends import face_pipeline
from .interrupt import StopSignals
from .parts import Parts, add_part_counts, concatenate_rows, read_part_summary
from .predict import (
    PredictOptions,
    PredictReport,
    PredictRun,
    default_num_workers,
    load_for_predict,
    note_skipped,
    process_inputs,
    write_run_summary,
)
from .resume import stored_rows
from .shards import Shard, WorkItem, video_units, work_items
from .sources import Source, SourceList, iter_sources
from .summaries import write_json
from .targets import RunTargets, check_targets
from .writers import columns, escaped_name, output_format, stored_text

logger = logging.getLogger(__name__)

WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
LOCAL_SIZE_VARIABLES = ("LOCAL_WORLD_SIZE", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE",
                        "MV2_COMM_WORLD_LOCAL_SIZE")
"""Where launchers say how many processes run in all and on this machine (the variables accelerate reads)."""

WAIT_LIMIT = timedelta(days=7)
"""How long a process that is done waits for the others (the process group's timeout): shards can end hours
apart when their inputs differ."""

USER_ERRORS = (OSError, ValueError, ImportError)


class ReportedByMain(ValueError):
    """A user error that the main process found and reports; the other processes end with it quietly."""

    reported_by_main = True


def _int_from_env(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value:
            return int(value)
    return default


def launched_state(options: PredictOptions):
    """accelerate's `PartialState` when this process is one of several started together; None for a process on
    its own. Processes run on the CPU (gloo) when `--device cpu` is asked for or no CUDA device is there."""
    if _int_from_env(WORLD_SIZE_VARIABLES, 1) <= 1:
        return None
    from accelerate import PartialState

    cpu = options.device == "cpu" or (options.device == "auto" and not torch.cuda.is_available())
    return PartialState(cpu=cpu, timeout=WAIT_LIMIT)


def per_process_options(options: PredictOptions, local_processes: int) -> PredictOptions:
    """`options` with the workers and threads that were left to their defaults shared out among the processes on
    this machine: each gets its share of the cores, and workers as `default_num_workers` gives them for that share."""
    cores = max(1, (os.cpu_count() or 1) // max(1, local_processes))
    workers = options.num_workers if options.num_workers is not None else default_num_workers(cores)
    threads = options.threads if options.threads is not None else max(1, cores - workers)
    return replace(options, num_workers=workers, threads=threads)


def _survey(state, options: PredictOptions, targets: RunTargets, parts: Parts,
            units_of: Callable[[Source], int]) -> tuple[SourceList | None, int]:
    """The main process's checks and count of work units, sent to every process; (what the listing found, on the
    main process only; the total units). A problem raises on every process (ReportedByMain on the others)."""
    from accelerate.utils import broadcast_object_list

    outcome: list[Any] = [None, 0]
    found, error = None, None
    if state.is_main_process:
        try:
            survey = check_targets(targets, options.inputs, options.overwrite, options.resume, units_of)
            parts.check(targets.output, options.overwrite, options.resume)
            found, outcome = survey.found, [None, survey.units]
        except USER_ERRORS as err:
            error, outcome = err, [str(err), 0]
    broadcast_object_list(outcome)
    if error is not None:
        raise error
    if outcome[0] is not None:
        raise ReportedByMain(outcome[0])
    return found, outcome[1]


def run_sharded(options: PredictOptions, state) -> PredictReport:
    """This process's share of a run over several processes (see the module docstring); the main process's
    report is the whole run's."""
    options = per_process_options(options, _int_from_env(LOCAL_SIZE_VARIABLES, state.num_processes))
    try:
        with StopSignals(second_acts=False) as stop:
            return _run_shard(options, state, stop)
    finally:
        state.destroy_process_group()


def _run_shard(options: PredictOptions, state, stop: StopSignals) -> PredictReport:
    targets = RunTargets.of(options.output, options.annotate_dir, options.summary_dir)
    parts = Parts.of(targets, state.num_processes)
    units_of = partial(video_units, frame_stride=options.frame_stride, max_frames=options.max_frames)
    found, units = _survey(state, options, targets, parts, units_of)
    shard = Shard(state.process_index, state.num_processes, units)
    loaded, threads = load_for_predict(options)
    pipe = face_pipeline(loaded, tta_views=options.tta_views, tta_shift=options.tta_shift)
    labels = [pipe.model.config.id2label[i] for i in range(pipe.model.config.num_labels)]
    part = parts.part(shard.index)
    run = PredictRun(options, labels, targets, stop, part)

    def items() -> Iterator[WorkItem]:
        sources = iter_sources(options.inputs, SourceList())
        return work_items(sources, shard, units_of, split_videos=options.annotate_dir is None)

    process_inputs(run, pipe, loaded.backend, threads, items, None, options.progress and state.is_main_process)
    run.names.close()
    write_json(part.summary, {**run.summary.as_dict(), "units": units})
    state.wait_for_everyone()
    if not state.is_main_process:
        return PredictReport(part.rows, part.summary, run.summary, process_index=state.process_index)
    merged = PredictRun(options, labels, targets, stop)
    note_skipped(merged, found)
    return merge_parts(merged, loaded, parts)


def merge_parts(run: PredictRun, loaded, parts: Parts) -> PredictReport:
    """The main process, once every process is done: the parts' counts added to `run` (which holds what the
    listing found), then, unless a signal stopped a process, the parts joined into the output, the video
    summaries made from it, the run summary written and the parts removed."""
    for part in parts.all():
        add_part_counts(run.summary, read_part_summary(part.summary))
    if run.summary.interrupted:
        summary_file = write_run_summary(run, loaded, parts.folder)
        return PredictReport(parts.folder, summary_file, run.summary)
    output, fmt = run.targets.output, output_format(run.options.output, run.options.format)
    concatenate_rows([part.rows for part in parts.all()], output, fmt)
    add_video_summaries(run, iter_sources(run.options.inputs, SourceList()), fmt)
    run.names.close()
    run.summary.rows_bytes = output.stat().st_size
    summary_file = write_run_summary(run, loaded, output)
    shutil.rmtree(parts.folder)
    return PredictReport(output, summary_file, run.summary, run.videos, run.video_files)


def _source_groups(path, fmt: str, names: list[str]) -> Iterator[tuple[str, list[dict]]]:
    """The rows of a rows file as (source cell, its rows), one group per input (its rows are consecutive)."""
    group: list[dict] = []
    for row in stored_rows(path, fmt, names):
        if not row.cells:  # the CSV header
            continue
        if group and row.source != group[0]["source"]:
            yield group[0]["source"], group
            group = []
        group.append(row.cells)
    if group:
        yield group[0]["source"], group


def add_video_summaries(run: PredictRun, sources: Iterable[Source], fmt: str) -> None:
    """Every video's summary and plot, made from the merged rows, named as a one-process run names them (every
    input is listed again, in order, beside the rows)."""
    output = run.targets.output
    groups = _source_groups(output, fmt, columns(run.labels, run.options.landmarks))
    head = next(groups, None)
    for source in sources:
        files = run.names.of(source)
        name, rows = stored_text(escaped_name(source.path), fmt), []
        while head is not None and head[0] == name:
            rows.extend(head[1])
            head = next(groups, None)
        if source.kind == "video" and rows:
            run.video_from_rows(source, files, rows)
    if head is not None:
        raise ValueError(f"{output} holds rows for {head[0]}, which the inputs listed again do not have at that "
                         "place: the inputs changed while the run went on; run it again with --overwrite")


__all__ = ["LOCAL_SIZE_VARIABLES", "WAIT_LIMIT", "WORLD_SIZE_VARIABLES", "ReportedByMain", "add_video_summaries",
           "launched_state", "merge_parts", "per_process_options", "run_sharded"]
