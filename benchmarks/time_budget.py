"""Training on a wall-clock budget: the schedule runs on the clock, not on a step count.

A schedule sized in steps from a timing probe ends early or late whenever the machine's speed changes during the run
(on these shared machines a GReFEL step took 0.37 s in one run and 0.48 s in the next), so a run cut off by the budget
never finished its learning-rate warm-down. Here the learning rate (linear warm-up, then cosine to zero) and GReFEL's
trust ramp follow the fraction of the budget spent, and training stops when the budget is spent: every run ends with
its warm-down complete, however fast the machine was.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback

from grefel_hf.training.trainer import GReFELTrainer


def warmup_cosine(progress: float, warmup: float) -> float:
    """Learning-rate factor at `progress` in [0, 1]: linear from 0 to 1 over `warmup`, then cosine down to 0."""
    progress = min(1.0, max(0.0, progress))
    if progress < warmup:
        return progress / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (progress - warmup) / (1.0 - warmup)))


class StopWhenBudgetSpent(TrainerCallback):
    """Ends training after the step during which the trainer's budget ran out."""

    def __init__(self, trainer: TimeBudgetTrainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if self.trainer.training_progress() >= 1.0:
            control.should_training_stop = True


class TimeBudgetTrainer(GReFELTrainer):
    """GReFELTrainer whose learning rate and trust ramp follow the wall clock over `budget_seconds`.

    The clock starts at the first training step. `args.max_steps` only caps the run: set it well above what the budget
    can buy. The warm-up is the fraction `args.warmup_steps` (a ratio below 1) of the budget.

    Args (besides GReFELTrainer's own):
        budget_seconds: the training time budget.
        clock: the time source, in seconds (tests pass a fake one).
    """

    def __init__(self, *args, budget_seconds: float, clock: Callable[[], float] = time.perf_counter, **kwargs):
        super().__init__(*args, **kwargs)
        if budget_seconds <= 0:
            raise ValueError(f"budget_seconds must be positive, got {budget_seconds}")
        if not 0.0 <= self.args.warmup_steps < 1.0:
            raise ValueError("a time-budget schedule needs warmup_steps as a ratio of the budget in [0, 1), got "
                             f"{self.args.warmup_steps}")
        self.budget_seconds, self.clock, self.clock_start = budget_seconds, clock, None
        self.add_callback(StopWhenBudgetSpent(self))

    def training_progress(self) -> float:
        """The fraction of the budget spent since the first training step, in [0, 1]."""
        if self.clock_start is None:
            return 0.0
        return min(1.0, (self.clock() - self.clock_start) / self.budget_seconds)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.clock_start is None:
            self.clock_start = self.clock()
        return super().training_step(model, inputs, num_items_in_batch)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            warmup = float(self.args.warmup_steps)
            self.lr_scheduler = LambdaLR(optimizer or self.optimizer,
                                         lambda _: warmup_cosine(self.training_progress(), warmup))
        return self.lr_scheduler


__all__ = ["StopWhenBudgetSpent", "TimeBudgetTrainer", "warmup_cosine"]
