"""Test-suite wide settings: everything runs offline, on CPU, with isolated Hugging Face caches."""

import atexit
import os
import shutil
import tempfile

# Set before transformers / datasets / huggingface_hub are imported anywhere in the test session.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
_CACHE_ROOT = tempfile.mkdtemp(prefix="grefel-test-cache-")
atexit.register(shutil.rmtree, _CACHE_ROOT, ignore_errors=True)  # the isolated caches go with the test session
os.environ["HF_HOME"] = os.path.join(_CACHE_ROOT, "hf_home")
os.environ["HF_MODULES_CACHE"] = os.path.join(_CACHE_ROOT, "modules")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_CACHE_ROOT, "datasets")
os.environ["MPLBACKEND"] = "Agg"

import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")


@pytest.fixture(scope="session")
def shared_data_dir() -> str:
    """The real FER data folder beside the project; tests that need it skip with a message when it is absent."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"real FER data not found at {SHARED_DATA} (only present on the project's own machines)")
    return SHARED_DATA


def tiny_grefel_config(backbone: str = "test_resnet", **overrides):
    """A GReFEL config small enough for CPU unit tests (48 px input, 32-d embeddings, 2 anchors per class), with the
    paper's primary head (an MLP on the fused embedding) and dropout, which the defaults (the bundled model's) leave
    out."""
    from grefel_hf import GReFELConfig

    settings = dict(
        backbone=backbone, image_size=48, embed_dim=32, anchors_per_class=2, num_attention_heads=4,
        geometry_heads=4, primary_input="embedding", primary_hidden_sizes=[32], dropout=0.1,
        reliability_hidden_sizes=[8], mc_dropout_samples=3,
    )
    settings.update(overrides)
    return GReFELConfig(**settings)


@pytest.fixture
def make_config():
    """Factory fixture returning `tiny_grefel_config`."""
    return tiny_grefel_config


def tiny_backbone_weights(folder, backbone: str, image_size: int = 32) -> str:
    """A `.safetensors` file of a freshly initialised headless timm `backbone` (seeded), written into `folder`: the
    local weights file a recipe's `--backbone_weights` names, for a tiny test backbone (`image_size` sets the input
    size of backbones that fix it, as ViTs do)."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(123)
    fixed = timm.models.get_pretrained_cfg(backbone).fixed_input_size
    extra = {"img_size": image_size} if fixed else {}
    state = timm.create_model(backbone, pretrained=False, num_classes=0, **extra).state_dict()
    path = os.path.join(str(folder), f"{backbone}.safetensors")
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, path)
    return path
