"""Command-line arguments of `train_hf.py`: data, and training in groups (objective, augmentation, optimisation,
EMA and selection, runtime), on top of transformers' `TrainingArguments`.

The model arguments are in `model_arguments.py`; `argument_parser.py` reads recipe files and orders `--help`. The
defaults train a small GReFEL on the generated expression set, so `accelerate launch train_hf.py` with no arguments
runs end to end on a 2-core CPU with nothing downloaded.
"""

from __future__ import annotations

import json
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from transformers import TrainingArguments

from ..data.augmentation import AUGMENTATION_DEFAULTS
from ..data.collators import MIXING_DEFAULTS
from ..losses import GReFELObjective
from ..tta_grefel import TTA_VIEWS, resolve_views
from .ema import DEFAULT_EMA_DECAY
from .field_docs import docstring_field_docs, with_fields
from .unfreezing import parse_unfreeze_schedule

_DATASET_NAMES = ("synthetic", "fer2013", "ferplus", "rafdb", "pixel_csv")
_CLASS_BALANCE = ("none", "weights", "sampler")
_DEFAULT_OBJECTIVE = GReFELObjective()


@dataclass
class DataArguments:
    """Where the data comes from. With no arguments: the generated expression set (zero downloads)."""

    dataset: str = field(
        default="synthetic",
        metadata={"help": f"A dataset_scripts builder ({', '.join(_DATASET_NAMES)}), a save_to_disk folder, a "
                          "Parquet folder or an image folder (<split>/<class>/*.png)."},
    )
    data_dir: str | None = field(default=None, metadata={"help": "Raw data folder for the fer2013/ferplus/rafdb/"
                                                                 "pixel_csv builders (docs/datasets.md gives the "
                                                                 "layouts)."})
    label_mode: str | None = field(
        default=None,
        metadata={"help": "FER+ training label mode: majority, probability, crossentropy or multi_target. "
                          "Validation and test always use majority. A dataset without FER+ votes has no label "
                          "modes: there it is ignored, with a warning."},
    )
    use_soft_labels: bool | None = field(
        default=None,
        metadata={"help": "Train on the `soft_label` column (FER+ vote distributions). Defaults to true for FER+ "
                          "crossentropy and multi_target modes."},
    )
    train_split: str = field(default="train", metadata={"help": "Split used for training."})
    eval_split: str = field(
        default="validation",
        metadata={"help": "Split used for evaluation and model selection. Test splits are refused: a checkpoint "
                          "is never selected on a test split."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate training data (debugging)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate evaluation data (debugging)."})
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "Cache folder of the dataset builders."})

    def __post_init__(self):
        for name in ("max_train_samples", "max_eval_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if "test" in self.eval_split.lower():
            raise ValueError(f"--eval_split {self.eval_split!r} looks like a test split; model selection must use a "
                             "validation split (evaluate on test afterwards with `grefel-hf evaluate`)")
        if self.label_mode is not None and self.label_mode not in (
            "majority", "probability", "crossentropy", "multi_target"
        ):
            raise ValueError(f"--label_mode must be majority, probability, crossentropy or multi_target, got "
                             f"{self.label_mode!r}")


def parse_mapping_argument(name: str, value: str | Mapping | None, example: str) -> dict | None:
    """A mapping argument's value: a mapping from a recipe, or JSON text from the command line (None stays None).

    Raises:
        ValueError: the text is not JSON, or the value is not a mapping (the message names the argument).
    """
    if value is None or isinstance(value, Mapping):
        return None if value is None else dict(value)
    try:
        value = json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(f"--{name} must be a JSON mapping on the command line, e.g. '{example}', got {value!r}") from err
    if not isinstance(value, dict):
        raise ValueError(f"--{name} must be a mapping, e.g. '{example}', got {value!r}")
    return value


_OBJECTIVE_ARGUMENTS = [f.name for f in fields(GReFELObjective) if f.name not in ("label_smoothing", "class_weights")]
"""The `GReFELObjective` fields that are training arguments of the same name."""


def objective_field_arguments() -> list[tuple[str, Any, Any]]:
    """One argument per `GReFELObjective` field that is a plain setting, of the same name, default and docstring
    (label smoothing is Trainer's own `--label_smoothing_factor`; class weights come from `--class_balance`)."""
    docs, types_by_name = docstring_field_docs(GReFELObjective), typing.get_type_hints(GReFELObjective)
    return [(name, types_by_name[name], field(default=getattr(_DEFAULT_OBJECTIVE, name), metadata={"help": docs[name]}))
            for name in _OBJECTIVE_ARGUMENTS]


@dataclass
@with_fields(objective_field_arguments())
class ObjectiveArguments:
    """Objective: what the loss is made of and how the gradients are routed. Besides the options below, every field
    of GReFEL's `GReFELObjective` is an argument of its own name, documented there (the baseline uses the label
    smoothing and class weights only), and the label smoothing is Trainer's `--label_smoothing_factor`."""

    help_title: ClassVar[str] = "objective: loss terms, label smoothing, class balance, gradient routing and clipping"
    trainer_fields: ClassVar[tuple[str, ...]] = ("label_smoothing_factor",)
    """Trainer's own arguments that `--help` lists in this group."""

    class_balance: str = field(
        default="none",
        metadata={"help": "'none', 'weights' (inverse-frequency class weights in the loss) or 'sampler' "
                          "(class-balanced sampling of the training set)."},
    )
    class_balance_power: float = field(
        default=1.0,
        metadata={"help": "How far --class_balance evens out the classes, in (0, 1]: a class's weight is "
                          "1 / count ** power, so 1 gives every class the same total weight and 0.5 (square-root "
                          "balancing) draws a rare class more often than its share but less than the others."},
    )
    clip_branch_separately: bool = field(
        default=False,
        metadata={"help": "Clip the gradient norm of GReFEL's branch (level projections, anchors, geometry "
                          "attention, fusion, reliability balancing) apart from the backbone's and the primary "
                          "head's, each to max_grad_norm. False clips all gradients together, as Trainer does. Not "
                          "supported under DeepSpeed, FSDP or XLA."},
    )

    def _check_objective(self) -> None:
        if self.class_balance not in _CLASS_BALANCE:
            raise ValueError(f"--class_balance must be one of {_CLASS_BALANCE}, got {self.class_balance!r}")
        if not 0.0 < self.class_balance_power <= 1.0:
            raise ValueError(f"--class_balance_power must be in (0, 1], got {self.class_balance_power}")
        if self.class_balance == "none" and self.class_balance_power != 1.0:
            raise ValueError(f"--class_balance_power {self.class_balance_power} has no effect without --class_balance "
                             "weights or sampler")
        if not 0.0 <= self.label_smoothing_factor < 1.0:
            raise ValueError(f"--label_smoothing_factor must be in [0, 1), got {self.label_smoothing_factor}")

    def objective_settings(self) -> dict[str, Any]:
        """The objective fields as `GReFELObjective` names (`label_smoothing` for `--label_smoothing_factor`)."""
        settings = {name: getattr(self, name) for name in _OBJECTIVE_ARGUMENTS}
        return {**settings, "label_smoothing": self.label_smoothing_factor}


@dataclass
class AugmentationArguments:
    """Augmentation and mixing of training batches (evaluation batches are never augmented or mixed)."""

    help_title: ClassVar[str] = "augmentation and mixing (training batches only)"

    augment: bool = field(default=True, metadata={"help": "Face-preserving training augmentation on/off."})
    aug_rotation: float = field(default=AUGMENTATION_DEFAULTS.rotation, metadata={"help": "Max rotation in degrees."})
    aug_color_jitter: float = field(default=AUGMENTATION_DEFAULTS.color_jitter,
                                    metadata={"help": "Brightness/contrast jitter strength."})
    aug_translate: float = field(default=AUGMENTATION_DEFAULTS.translate,
                                 metadata={"help": "Max affine translation (fraction of size)."})
    aug_scale_min: float = field(default=AUGMENTATION_DEFAULTS.scale[0], metadata={"help": "Min affine scale."})
    aug_scale_max: float = field(default=AUGMENTATION_DEFAULTS.scale[1], metadata={"help": "Max affine scale."})
    aug_perspective: float = field(default=AUGMENTATION_DEFAULTS.perspective, metadata={"help": "Perspective distortion scale."})
    aug_blur_sigma_min: float = field(default=AUGMENTATION_DEFAULTS.blur_sigma[0], metadata={"help": "Min Gaussian blur sigma."})
    aug_blur_sigma_max: float = field(default=AUGMENTATION_DEFAULTS.blur_sigma[1],
                                      metadata={"help": "Max Gaussian blur sigma; 0 disables the blur."})
    aug_erasing_prob: float = field(default=AUGMENTATION_DEFAULTS.erasing_prob, metadata={"help": "Random erasing probability."})
    aug_hflip_prob: float = field(default=AUGMENTATION_DEFAULTS.hflip_prob, metadata={"help": "Horizontal flip probability."})
    mixup_alpha: float = field(default=MIXING_DEFAULTS.mixup_alpha,
                               metadata={"help": "Mixup Beta(α, α); 0 disables Mixup."})
    cutmix_alpha: float = field(default=MIXING_DEFAULTS.cutmix_alpha,
                                metadata={"help": "Face-aware CutMix Beta(α, α); 0 disables it."})
    mix_prob: float = field(default=MIXING_DEFAULTS.prob, metadata={"help": "Probability of mixing a training batch."})
    mix_switch_prob: float = field(default=MIXING_DEFAULTS.switch_prob,
                                   metadata={"help": "Probability of CutMix instead of Mixup."})
    aug_randaugment_ops: int = field(
        default=AUGMENTATION_DEFAULTS.randaugment_ops,
        metadata={"help": "RandAugment (torchvision's): random operations applied to each augmented image; 0 "
                          "disables it."},
    )
    aug_randaugment_magnitude: int = field(
        default=AUGMENTATION_DEFAULTS.randaugment_magnitude, metadata={"help": "RandAugment magnitude on torchvision's scale 0-30 (its default is 9)."}
    )
    aug_prob: float = field(
        default=AUGMENTATION_DEFAULTS.apply_prob,
        metadata={"help": "Probability that a training image is augmented at all (flip, affine, perspective, colour, "
                          "blur, RandAugment, erasing); the others get the image processor only."},
    )
    aug_class_probs: str | None = field(
        default=None,
        metadata={"help": "Class-specific --aug_prob, by class name: a mapping such as {fear: 0.95, sad: 0.9} in a "
                          "recipe, JSON on the command line. Classes it does not name keep --aug_prob; a name the "
                          "training set does not have is refused."},
    )

    def _check_augmentation(self) -> None:
        """Refuse augmentation ranges that torchvision would only reject at the first training batch."""
        if not 0 < self.aug_scale_min <= self.aug_scale_max:
            raise ValueError(f"--aug_scale_min and --aug_scale_max must satisfy 0 < min <= max, got "
                             f"{self.aug_scale_min} and {self.aug_scale_max}")
        if self.aug_blur_sigma_max != 0 and not 0 < self.aug_blur_sigma_min <= self.aug_blur_sigma_max:
            raise ValueError(f"--aug_blur_sigma_min and --aug_blur_sigma_max must satisfy 0 < min <= max (or max 0 "
                             f"to disable the blur), got {self.aug_blur_sigma_min} and {self.aug_blur_sigma_max}")
        for name in ("aug_erasing_prob", "aug_hflip_prob", "mix_prob", "mix_switch_prob", "aug_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.aug_randaugment_ops < 0 or not 0 <= self.aug_randaugment_magnitude <= 30:
            raise ValueError(f"--aug_randaugment_ops must be >= 0 and --aug_randaugment_magnitude in 0..30, got "
                             f"{self.aug_randaugment_ops} and {self.aug_randaugment_magnitude}")
        self.aug_class_probs = parse_mapping_argument("aug_class_probs", self.aug_class_probs, '{"fear": 0.95}')
        for name, probability in (self.aug_class_probs or {}).items():
            if not isinstance(probability, int | float) or not 0.0 <= probability <= 1.0:
                raise ValueError(f"--aug_class_probs: the probability of {name!r} must be in [0, 1], got "
                                 f"{probability!r}")
        for name in ("aug_rotation", "aug_color_jitter", "aug_translate", "aug_perspective", "mixup_alpha",
                     "cutmix_alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0 (0 switches it off), got {getattr(self, name)}")

    def augmentation_kwargs(self) -> dict:
        """The keyword arguments of `GReFELTrainAugmentation`, all zero when augmentation is off."""
        if not self.augment:
            return dict(rotation=0.0, color_jitter=0.0, translate=0.0, scale=(1.0, 1.0), perspective=0.0,
                        blur_sigma=None, erasing_prob=0.0, hflip_prob=0.0)
        return dict(
            randaugment_ops=self.aug_randaugment_ops, randaugment_magnitude=self.aug_randaugment_magnitude,
            apply_prob=self.aug_prob, class_probs=self.aug_class_probs,
            rotation=self.aug_rotation, color_jitter=self.aug_color_jitter, translate=self.aug_translate,
            scale=(self.aug_scale_min, self.aug_scale_max), perspective=self.aug_perspective,
            blur_sigma=(self.aug_blur_sigma_min, self.aug_blur_sigma_max) if self.aug_blur_sigma_max > 0 else None,
            erasing_prob=self.aug_erasing_prob,
            hflip_prob=self.aug_hflip_prob,
        )


@dataclass
class OptimizationArguments:
    """Optimisation: learning rates per part of the model and which backbone layers train."""

    help_title: ClassVar[str] = ("optimisation: learning rate per part, frozen or progressively thawed backbone "
                                 "stages, SAM, OneCycle")

    backbone_lr_multiplier: float | None = field(
        default=None,
        metadata={"help": "Backbone learning rate = lr × this. Default: 0.1 when the backbone starts from pretrained "
                          "weights (--backbone_weights or --model_name_or_path); 1.0 for a randomly initialised "
                          "backbone, which a tenth of the learning rate would barely move."},
    )
    backbone_frozen_groups: int = field(
        default=0,
        metadata={"help": "Freeze the backbone's first N parameter groups in timm's coarse order: the stem, then one "
                          "stage each (EfficientNet block stages, ResNet layers, ViT blocks). Backpropagation stops "
                          "at the first trainable layer, so a step is cheaper; 0 trains the whole network."},
    )
    anchor_lr_multiplier: float = field(default=1.0, metadata={"help": "Anchor learning rate = lr × this."})
    anchor_weight_decay: float = field(default=0.0, metadata={"help": "Weight decay of the anchors."})
    unfreeze_schedule: str | None = field(
        default=None,
        metadata={"help": "Progressive unfreezing: epoch → backbone stages that thaw at its start, named as the "
                          "backbone names them (e.g. {10: [layer4], 20: [layer3], 40: [all]} in a recipe, JSON on "
                          "the command line). The heads train from the start; the backbone is frozen until its "
                          "first entry, and a thawed stage stays thawed. Not with --backbone_frozen_groups."},
    )
    sam_rho: float = field(
        default=0.0,
        metadata={"help": "Sharpness-aware minimisation: radius ρ of the weight perturbation (0.05 is the SAM paper's "
                          "default); 0 trains without SAM. Each step then costs a second forward and backward pass."},
    )
    sam_adaptive: bool = field(
        default=False, metadata={"help": "Adaptive SAM (ASAM): perturb each weight in proportion to its size."}
    )
    one_cycle: bool = field(
        default=False,
        metadata={"help": "PyTorch's OneCycleLR instead of --lr_scheduler_type and the warm-up (which must be 0): "
                          "cosine warm-up from lr / --one_cycle_div_factor to lr over --one_cycle_pct_start of the "
                          "steps, then cosine annealing; each parameter group peaks at its own learning rate."},
    )
    one_cycle_pct_start: float = field(default=0.3, metadata={"help": "OneCycle: fraction of steps warming up."})
    one_cycle_div_factor: float = field(default=25.0, metadata={"help": "OneCycle: initial lr = lr / this."})
    one_cycle_final_div_factor: float = field(
        default=1e4, metadata={"help": "OneCycle: final lr = initial lr / this."}
    )
    one_cycle_momentum: bool = field(
        default=True,
        metadata={"help": "OneCycle: cycle the momentum (Adam's β1) between 0.95 and 0.85 against the learning rate, "
                          "as PyTorch does by default."},
    )

    def resolve_backbone_lr_multiplier(self, pretrained_backbone: bool) -> float:
        """`--backbone_lr_multiplier`, set to its default when unset: 0.1 for a backbone that starts from pretrained
        weights, 1.0 for a randomly initialised one (which a tenth of the learning rate would barely move). The value
        is stored, so whoever reads the argument afterwards sees the same."""
        if self.backbone_lr_multiplier is None:
            self.backbone_lr_multiplier = 0.1 if pretrained_backbone else 1.0
        return self.backbone_lr_multiplier

    def _check_optimization(self) -> None:
        if self.backbone_frozen_groups < 0:
            raise ValueError(f"--backbone_frozen_groups must be >= 0 (0 trains the whole backbone), got "
                             f"{self.backbone_frozen_groups}")
        for name in ("backbone_lr_multiplier", "anchor_lr_multiplier", "anchor_weight_decay", "sam_rho"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"--{name} must be >= 0, got {value}")
        if self.sam_adaptive and not self.sam_rho:
            raise ValueError("--sam_adaptive needs --sam_rho > 0")
        self.unfreeze_schedule = parse_unfreeze_schedule(self.unfreeze_schedule)
        if self.unfreeze_schedule and self.backbone_frozen_groups:
            raise ValueError("--unfreeze_schedule and --backbone_frozen_groups both freeze the backbone: use one")
        self._check_one_cycle()

    def _check_one_cycle(self) -> None:
        if not self.one_cycle:
            return
        if self.warmup_steps:
            raise ValueError(f"--one_cycle brings its own warm-up (--one_cycle_pct_start): set --warmup_steps 0, got "
                             f"{self.warmup_steps}")
        if not 0.0 < self.one_cycle_pct_start < 1.0:
            raise ValueError(f"--one_cycle_pct_start must be in (0, 1), got {self.one_cycle_pct_start}")
        for name in ("one_cycle_div_factor", "one_cycle_final_div_factor"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be > 0, got {getattr(self, name)}")


@dataclass
class SelectionArguments:
    """EMA of the weights, how the final model is chosen and how it is calibrated (always on the validation
    split)."""

    help_title: ClassVar[str] = "EMA, model selection and calibration (on the validation split)"

    use_ema: bool = field(default=True, metadata={"help": "Keep an EMA of the weights; evaluate and save it."})
    ema_decay: float = field(default=DEFAULT_EMA_DECAY, metadata={"help": "EMA decay (after warm-up), in [0, 1)."})
    ema_warmup: bool = field(default=True, metadata={"help": "Warm the EMA decay up from 0 (ModelEmaV3 style)."})
    select_inference_mode: bool = field(
        default=True,
        metadata={"help": "After training, evaluate the final weights with GReFEL's primary head p alone and with "
                          "the reliability-corrected q, and save the mode that scores better on the validation split "
                          "as the model's inference_mode (weights_selection.json records both scores). False keeps "
                          "the config's mode."},
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many evaluations without improvement."}
    )
    calibrate: bool = field(
        default=True,
        metadata={"help": "At the end, after the weights and the inference mode are chosen, fit a temperature to the "
                          "final log-probabilities on the validation split (GReFEL models only) and save it in the "
                          "model's config (calibration_temperature), so that its probabilities are calibrated; "
                          "calibration.json beside the weights records it with the ECE before and after. A "
                          "temperature never changes a predicted class. False saves the model uncalibrated."},
    )
    eval_tta_views: int = field(
        default=1,
        metadata={"help": f"Test-time augmentation of every evaluation (and so of the selection of weights and "
                          f"inference mode): the model's distributions averaged over the first N views of "
                          f"{list(TTA_VIEWS)} (5 % shifts). 1 evaluates the images as they are."},
    )

    def _check_selection(self) -> None:
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"--ema_decay must be in [0, 1), got {self.ema_decay}")
        try:
            resolve_views(self.eval_tta_views)
        except ValueError as err:
            raise ValueError(f"--eval_tta_views: {err}") from err
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise ValueError(f"--early_stopping_patience must be >= 1, got {self.early_stopping_patience}")
            if str(self.eval_strategy) in ("no", "IntervalStrategy.NO"):
                raise ValueError("--early_stopping_patience needs evaluations: set --eval_strategy epoch or steps")
            if self.metric_for_best_model is None:
                self.metric_for_best_model = "accuracy"  # eval_accuracy, on the validation split


@dataclass
class RuntimeArguments:
    """Runtime: memory layout, CPU threads and CPU speed-ups (results do not depend on them)."""

    help_title: ClassVar[str] = "runtime: memory layout, CPU threads and CPU speed-ups"

    channels_last: bool = field(
        default=True,
        metadata={"help": "Run the model and its input batches in channels-last memory format. Convolutional "
                          "backbones train much faster on CPU this way; saved weights are the same either way."},
    )
    cpu_threads: int | None = field(
        default=None,
        metadata={"help": "Torch threads of a single-process CPU run. Default: every core (`accelerate launch` "
                          "without a config file pins OMP_NUM_THREADS=1, which leaves cores idle)."},
    )
    fast_depthwise_grad: bool = field(
        default=True,
        metadata={"help": "On CPU, while training, give depthwise convolutions whose kernel is larger than their input "
                          "map a per-tap weight gradient (the same gradient; a step 0.52x to 0.77x as long on "
                          "EfficientNet-Lite0 at 64-80 px). Their class is switched when training starts and back "
                          "when it ends; state dicts and saved models are unaffected."},
    )
    keep_freed_memory: bool = field(
        default=True,
        metadata={"help": "On CPU with glibc, when training starts, tell malloc to keep freed memory in the process "
                          "instead of mapping large blocks afresh (large activations then stop page-faulting every "
                          "step). A process-wide setting that lasts until the process exits; never made by a process "
                          "that only evaluates or predicts."},
    )

    def _check_runtime(self) -> None:
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"--cpu_threads must be >= 1, got {self.cpu_threads}")


PROJECT_ARGUMENT_GROUPS = (ObjectiveArguments, AugmentationArguments, OptimizationArguments, SelectionArguments,
                           RuntimeArguments)
"""The project's own training option groups, in the order `--help` lists them (before Trainer's own options)."""


@dataclass
class GReFELTrainingArguments(ObjectiveArguments, AugmentationArguments, OptimizationArguments, SelectionArguments,
                              RuntimeArguments, TrainingArguments):
    """`TrainingArguments` with the project's defaults and its own option groups (see `PROJECT_ARGUMENT_GROUPS`)."""

    output_dir: str | None = field(default="outputs/grefel-synthetic", metadata={"help": "Where to write."})
    num_train_epochs: float = field(default=16.0, metadata={"help": "Total number of training epochs."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Batch size per device (training)."})
    per_device_eval_batch_size: int = field(default=128, metadata={"help": "Batch size per device (evaluation)."})
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak learning rate of the model's heads."})
    label_smoothing_factor: float = field(
        default=_DEFAULT_OBJECTIVE.label_smoothing,
        metadata={"help": "Trainer's label smoothing ε, in [0, 1): hard targets become ε/C and 1 − ε + ε/C. "
                          "Applied to hard labels in the loss and folded into CutMix/Mixup targets; soft labels "
                          "(FER+ votes) are used as given."},
    )
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (not on anchors, norms, biases)."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warm-up steps (a float < 1 is a ratio)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps or epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save checkpoints: no, steps or epoch."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: images are decoded by the on-the-fly transform."}
    )
    dataloader_pin_memory: bool = field(default=False, metadata={"help": "Pin memory (useful on GPU only)."})

    def __post_init__(self):
        self._check_objective()
        self._check_augmentation()
        self._check_optimization()
        self._check_selection()
        self._check_runtime()
        self._check_trainer_basics()
        super().__post_init__()

    def _check_trainer_basics(self) -> None:
        """Refuse values Trainer would only reject deep inside torch, after the data is prepared."""
        if self.output_dir and os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            raise ValueError(f"--output_dir {self.output_dir} is an existing file; expected a folder to write the "
                             "model into")
        if self.learning_rate < 0:
            raise ValueError(f"--learning_rate must be >= 0, got {self.learning_rate}")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError(f"--num_train_epochs must be > 0 (or set --max_steps), got {self.num_train_epochs}")
        if self.weight_decay < 0 or self.warmup_steps < 0 or self.max_grad_norm < 0:
            raise ValueError("--weight_decay, --warmup_steps and --max_grad_norm must be >= 0, got "
                             f"{self.weight_decay}, {self.warmup_steps} and {self.max_grad_norm}")


__all__ = ["DataArguments", "GReFELTrainingArguments", "PROJECT_ARGUMENT_GROUPS"]
