"""Command-line arguments of `train_hf.py`, as dataclasses for `HfArgumentParser` (a `.json`/`.yaml` file works too).

The defaults train a small GReFEL on the generated expression set, so `accelerate launch train_hf.py` with no
arguments runs end to end on a 2-core CPU with nothing downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

_DATASET_NAMES = ("synthetic", "fer2013", "ferplus", "rafdb")
_CLASS_BALANCE = ("none", "weights", "sampler")


@dataclass
class ModelArguments:
    """Which model to train: a fresh GReFEL over a timm backbone, or a saved GReFEL folder to fine-tune."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A saved GReFEL folder (or hub id) to fine-tune. When unset, a fresh model is built."},
    )
    backbone: str = field(default="resnet10t", metadata={"help": "timm model name of a fresh model's backbone."})
    backbone_weights: str | None = field(
        default=None,
        metadata={"help": "Offline pretrained backbone weights for a fresh model: a .safetensors / torch state-dict "
                          "file, or a known source such as 'efficientnet-lite0' (needs --backbone "
                          "tf_efficientnet_lite0). timm's downloader is never used."},
    )
    image_size: int = field(default=48, metadata={"help": "Input size in pixels (square); FER images are 48x48."})
    embed_dim: int = field(default=128, metadata={"help": "GReFEL embedding and anchor size."})
    anchors_per_class: int = field(default=10, metadata={"help": "Learnable anchors per class."})
    geometry_variant: str = field(default="basic", metadata={"help": "'basic' or 'enhanced' geometry module."})
    reliability_variant: str = field(default="basic", metadata={"help": "'basic' or 'enhanced' reliability."})
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Extra GReFELConfig fields as 'name=value,name=value' (values parsed as JSON when "
                          "possible), e.g. 'center_loss_weight=0.1,dropout=0.2'."},
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "When fine-tuning a saved folder on a different label set, re-initialise the heads."},
    )

    def __post_init__(self):
        for name in ("geometry_variant", "reliability_variant"):
            if getattr(self, name) not in ("basic", "enhanced"):
                raise ValueError(f"--{name} must be 'basic' or 'enhanced', got {getattr(self, name)!r}")
        if self.image_size < 16:
            raise ValueError(f"--image_size must be at least 16 pixels, got {self.image_size}")


@dataclass
class DataArguments:
    """Where the data comes from. With no arguments: the generated expression set (zero downloads)."""

    dataset: str = field(
        default="synthetic",
        metadata={"help": f"A dataset_scripts builder ({', '.join(_DATASET_NAMES)}), a save_to_disk folder, a "
                          "Parquet folder or an image folder (<split>/<class>/*.png)."},
    )
    data_dir: str | None = field(default=None, metadata={"help": "Raw data folder for the fer2013/ferplus/rafdb "
                                                                 "builders (see DATA.md for the layouts)."})
    label_mode: str | None = field(
        default=None,
        metadata={"help": "FER+ training label mode: majority, probability, crossentropy or multi_target. "
                          "Validation and test always use majority."},
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
    class_balance: str = field(
        default="none",
        metadata={"help": "'none', 'weights' (inverse-frequency class weights in the loss) or 'sampler' "
                          "(class-balanced sampling of the training set)."},
    )

    def __post_init__(self):
        if self.class_balance not in _CLASS_BALANCE:
            raise ValueError(f"--class_balance must be one of {_CLASS_BALANCE}, got {self.class_balance!r}")
        if "test" in self.eval_split.lower():
            raise ValueError(f"--eval_split {self.eval_split!r} looks like a test split; model selection must use a "
                             "validation split (evaluate on test afterwards with `grefel-hf evaluate`)")
        if self.label_mode is not None and self.label_mode not in (
            "majority", "probability", "crossentropy", "multi_target"
        ):
            raise ValueError(f"--label_mode must be majority, probability, crossentropy or multi_target, got "
                             f"{self.label_mode!r}")


@dataclass
class GReFELTrainingArguments(TrainingArguments):
    """`TrainingArguments` with GReFEL defaults and the options of mixing, augmentation, EMA and param groups."""

    output_dir: str | None = field(default="outputs/grefel-synthetic", metadata={"help": "Where to write."})
    num_train_epochs: float = field(default=16.0, metadata={"help": "Total number of training epochs."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Batch size per device (training)."})
    per_device_eval_batch_size: int = field(default=128, metadata={"help": "Batch size per device (evaluation)."})
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak learning rate of the GReFEL heads."})
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
    mixup_alpha: float = field(default=0.8, metadata={"help": "Mixup Beta(α, α); 0 disables Mixup."})
    cutmix_alpha: float = field(default=1.0, metadata={"help": "Face-aware CutMix Beta(α, α); 0 disables it."})
    mix_prob: float = field(default=0.5, metadata={"help": "Probability of mixing a training batch."})
    mix_switch_prob: float = field(default=0.5, metadata={"help": "Probability of CutMix instead of Mixup."})
    augment: bool = field(default=True, metadata={"help": "Face-preserving training augmentation on/off."})
    aug_rotation: float = field(default=8.0, metadata={"help": "Max rotation in degrees."})
    aug_color_jitter: float = field(default=0.25, metadata={"help": "Brightness/contrast jitter strength."})
    aug_translate: float = field(default=0.08, metadata={"help": "Max affine translation (fraction of size)."})
    aug_scale_min: float = field(default=0.92, metadata={"help": "Min affine scale."})
    aug_scale_max: float = field(default=1.08, metadata={"help": "Max affine scale."})
    aug_perspective: float = field(default=0.15, metadata={"help": "Perspective distortion scale."})
    aug_blur_sigma_min: float = field(default=0.1, metadata={"help": "Min Gaussian blur sigma."})
    aug_blur_sigma_max: float = field(default=0.8, metadata={"help": "Max Gaussian blur sigma; 0 disables the blur."})
    aug_erasing_prob: float = field(default=0.15, metadata={"help": "Random erasing probability."})
    aug_hflip_prob: float = field(default=0.5, metadata={"help": "Horizontal flip probability."})
    use_ema: bool = field(default=True, metadata={"help": "Keep an EMA of the weights; evaluate and save it."})
    ema_decay: float = field(default=0.998, metadata={"help": "EMA decay (after warm-up)."})
    ema_warmup: bool = field(default=True, metadata={"help": "Warm the EMA decay up from 0 (ModelEmaV3 style)."})
    cpu_threads: int | None = field(
        default=None,
        metadata={"help": "Torch threads of a single-process CPU run. Default: every core (`accelerate launch` "
                          "without a config file pins OMP_NUM_THREADS=1, which leaves cores idle)."},
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many evaluations without improvement."}
    )
    channels_last: bool = field(
        default=True,
        metadata={"help": "Run the model and its input batches in channels-last memory format. Convolutional "
                          "backbones train much faster on CPU this way (benchmarks/memory_format.py); saved "
                          "weights are the same either way."},
    )
    select_inference_mode: bool = field(
        default=True,
        metadata={"help": "After training, evaluate the final weights with GReFEL's primary head p alone and with "
                          "the reliability-corrected q, and save the mode that scores better on the validation split "
                          "as the model's inference_mode (weights_selection.json records both scores). False keeps "
                          "the config's mode."},
    )
    fast_depthwise_grad: bool = field(
        default=True,
        metadata={"help": "On CPU, compute the weight gradient of depthwise convolutions whose kernel is larger than "
                          "their input map tap by tap: PyTorch's own is pathologically slow there (EfficientNet's "
                          "last stages on small faces; see grefel_hf/training/depthwise.py). Same gradients up to "
                          "float rounding; no effect on GPUs or elsewhere."},
    )
    cpu_reuse_memory: bool = field(
        default=True,
        metadata={"help": "On CPU with glibc, keep freed memory in the process (malloc without mmap), so that "
                          "activations of 32 MiB or more are reused from step to step instead of page-faulting afresh "
                          "(see grefel_hf/training/cpu_memory.py). A process-wide setting; no effect on GPU runs."},
    )

    clip_branch_separately: bool = field(
        default=False,
        metadata={"help": "Clip the gradient norm of GReFEL's geometry branch (level projections, anchors, geometry "
                          "attention, fusion, reliability balancing) apart from that of the backbone and the primary "
                          "head, each to max_grad_norm, so that the branch's gradients never shrink the backbone's "
                          "and p's steps. False clips all gradients together, as Trainer does. Not supported under "
                          "DeepSpeed or FSDP."},
    )

    def __post_init__(self):
        self._check_augmentation_ranges()
        if self.backbone_frozen_groups < 0:
            raise ValueError(f"--backbone_frozen_groups must be >= 0 (0 trains the whole backbone), got "
                             f"{self.backbone_frozen_groups}")
        if self.label_smoothing_factor != 0:
            # Trainer's label smoother never runs: the model computes its own loss.
            raise ValueError(f"--label_smoothing_factor {self.label_smoothing_factor} would be ignored: GReFEL's loss "
                             "takes its smoothing from the model config (--config_overrides label_smoothing=0.1)")
        if self.early_stopping_patience is not None:
            if str(self.eval_strategy) in ("no", "IntervalStrategy.NO"):
                raise ValueError("--early_stopping_patience needs evaluations: set --eval_strategy epoch or steps")
            if self.metric_for_best_model is None:
                self.metric_for_best_model = "accuracy"  # eval_accuracy, on the validation split
        super().__post_init__()

    def _check_augmentation_ranges(self) -> None:
        """Refuse augmentation ranges that torchvision would only reject at the first training batch."""
        if not 0 < self.aug_scale_min <= self.aug_scale_max:
            raise ValueError(f"--aug_scale_min and --aug_scale_max must satisfy 0 < min <= max, got "
                             f"{self.aug_scale_min} and {self.aug_scale_max}")
        if self.aug_blur_sigma_max != 0 and not 0 < self.aug_blur_sigma_min <= self.aug_blur_sigma_max:
            raise ValueError(f"--aug_blur_sigma_min and --aug_blur_sigma_max must satisfy 0 < min <= max (or max 0 "
                             f"to disable the blur), got {self.aug_blur_sigma_min} and {self.aug_blur_sigma_max}")

    def augmentation_kwargs(self) -> dict:
        """The keyword arguments of `GReFELTrainAugmentation`, all zero when augmentation is off."""
        if not self.augment:
            return dict(rotation=0.0, color_jitter=0.0, translate=0.0, scale=(1.0, 1.0), perspective=0.0,
                        blur_sigma=None, erasing_prob=0.0, hflip_prob=0.0)
        return dict(
            rotation=self.aug_rotation, color_jitter=self.aug_color_jitter, translate=self.aug_translate,
            scale=(self.aug_scale_min, self.aug_scale_max), perspective=self.aug_perspective,
            blur_sigma=(self.aug_blur_sigma_min, self.aug_blur_sigma_max) if self.aug_blur_sigma_max > 0 else None,
            erasing_prob=self.aug_erasing_prob,
            hflip_prob=self.aug_hflip_prob,
        )


__all__ = ["DataArguments", "GReFELTrainingArguments", "ModelArguments"]
