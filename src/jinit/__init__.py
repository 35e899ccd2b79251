"""jinit: every Keras initializer, and what JAX and PyTorch add, as pure, hashable, jit-compiled JAX values."""

from jinit._src.adapters import LoraInit as LoraInit
from jinit._src.adapters import lora as lora
from jinit._src.audit import AuditReport as AuditReport
from jinit._src.audit import AuditRow as AuditRow
from jinit._src.audit import audit as audit
from jinit._src.base import Initializer as Initializer
from jinit._src.compose import packed as packed
from jinit._src.compose import scaled as scaled
from jinit._src.constant import constant as constant
from jinit._src.constant import identity as identity
from jinit._src.constant import ones as ones
from jinit._src.constant import ones_init as ones_init
from jinit._src.constant import zeros as zeros
from jinit._src.constant import zeros_init as zeros_init
from jinit._src.coord_check import CoordCheck as CoordCheck
from jinit._src.coord_check import coord_check as coord_check
from jinit._src.einsum import einsum_axes as einsum_axes
from jinit._src.fans import compute_fans as compute_fans
from jinit._src.keras import to_keras as to_keras
from jinit._src.mup import MuP as MuP
from jinit._src.mup import mup as mup
from jinit._src.mup_depth import DepthMuP as DepthMuP
from jinit._src.mup_depth import mup_depth as mup_depth
from jinit._src.mup_optax import mu_adam as mu_adam
from jinit._src.mup_optax import mu_adamw as mu_adamw
from jinit._src.mup_optax import mu_sgd as mu_sgd
from jinit._src.mup_optax import mup_scale as mup_scale
from jinit._src.orthogonal import delta_orthogonal as delta_orthogonal
from jinit._src.orthogonal import orthogonal as orthogonal
from jinit._src.pytorch import calculate_gain as calculate_gain
from jinit._src.pytorch import dirac as dirac
from jinit._src.pytorch import sparse as sparse
from jinit._src.pytorch import torch_kaiming_normal as torch_kaiming_normal
from jinit._src.pytorch import torch_kaiming_uniform as torch_kaiming_uniform
from jinit._src.pytorch import torch_xavier_normal as torch_xavier_normal
from jinit._src.pytorch import torch_xavier_uniform as torch_xavier_uniform
from jinit._src.pytorch import trunc_normal as trunc_normal
from jinit._src.random import normal as normal
from jinit._src.random import random_normal as random_normal
from jinit._src.random import random_uniform as random_uniform
from jinit._src.random import truncated_normal as truncated_normal
from jinit._src.random import uniform as uniform
from jinit._src.registry import deserialize as deserialize
from jinit._src.registry import get as get
from jinit._src.registry import register as register
from jinit._src.registry import registered_names as registered_names
from jinit._src.registry import serialize as serialize
from jinit._src.resize import resize_rows as resize_rows
from jinit._src.stft import stft as stft
from jinit._src.torch_layers import torch_bias as torch_bias
from jinit._src.torch_layers import torch_conv as torch_conv
from jinit._src.torch_layers import torch_linear as torch_linear
from jinit._src.tree import ParamSpec as ParamSpec
from jinit._src.tree import Progress as Progress
from jinit._src.tree import init_like as init_like
from jinit._src.tree import init_tree as init_tree
from jinit._src.tree import path_key as path_key
from jinit._src.tree import progress_bar as progress_bar
from jinit._src.typing import InitializerLike as InitializerLike
from jinit._src.variance_scaling import glorot_normal as glorot_normal
from jinit._src.variance_scaling import glorot_uniform as glorot_uniform
from jinit._src.variance_scaling import he_normal as he_normal
from jinit._src.variance_scaling import he_uniform as he_uniform
from jinit._src.variance_scaling import kaiming_normal as kaiming_normal
from jinit._src.variance_scaling import kaiming_uniform as kaiming_uniform
from jinit._src.variance_scaling import keras_variance_scaling as keras_variance_scaling
from jinit._src.variance_scaling import lecun_normal as lecun_normal
from jinit._src.variance_scaling import lecun_uniform as lecun_uniform
from jinit._src.variance_scaling import variance_scaling as variance_scaling
from jinit._src.variance_scaling import xavier_normal as xavier_normal
from jinit._src.variance_scaling import xavier_uniform as xavier_uniform

__version__ = "0.2.0.dev0"


def __getattr__(name: str) -> object:
    """The integrations (`jinit.flax`, `jinit.haiku`, `jinit.equinox`, `jinit.keras`) load on first use, not with
    `jinit`: each imports its framework when it needs it."""
    if name in ("flax", "haiku", "equinox", "keras"):
        import importlib

        return importlib.import_module(f"jinit.{name}")
    raise AttributeError(f"module 'jinit' has no attribute {name!r}")


__all__ = (
    "AuditReport",
    "AuditRow",
    "CoordCheck",
    "DepthMuP",
    "Initializer",
    "InitializerLike",
    "LoraInit",
    "MuP",
    "ParamSpec",
    "Progress",
    "audit",
    "calculate_gain",
    "compute_fans",
    "constant",
    "coord_check",
    "delta_orthogonal",
    "deserialize",
    "dirac",
    "einsum_axes",
    "get",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "identity",
    "init_like",
    "init_tree",
    "kaiming_normal",
    "kaiming_uniform",
    "keras_variance_scaling",
    "lecun_normal",
    "lecun_uniform",
    "lora",
    "mu_adam",
    "mu_adamw",
    "mu_sgd",
    "mup",
    "mup_depth",
    "mup_scale",
    "normal",
    "ones",
    "ones_init",
    "orthogonal",
    "packed",
    "path_key",
    "progress_bar",
    "random_normal",
    "random_uniform",
    "register",
    "registered_names",
    "resize_rows",
    "scaled",
    "serialize",
    "sparse",
    "stft",
    "to_keras",
    "torch_bias",
    "torch_conv",
    "torch_kaiming_normal",
    "torch_kaiming_uniform",
    "torch_linear",
    "torch_xavier_normal",
    "torch_xavier_uniform",
    "trunc_normal",
    "truncated_normal",
    "uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
    "zeros_init",
)
