"""fran: a neural-network library written from scratch on NumPy.

Layers are frozen specs; params are pytrees of read-only arrays; init/apply/vjp are pure
functions dispatched through `fran.registry`; training is a fold of `train_step` over batches.
"""

from fran import memory, registry, schedules
from fran.engine import (
    apply,
    apply_with_state,
    init,
    init_state,
    network,
    output_shape,
    vjp,
    vjp_with_state,
)
from fran.io import CheckpointError, SaveError, load, load_checkpoint, save, save_checkpoint
from fran.layers import (
    activation,
    attention,
    batchnorm,
    conv2d,
    conv2d_transpose,
    dense,
    dropout,
    embedding,
    flatten,
    layernorm,
    lstm,
    maxpooling,
    position_embedding,
    residual,
    rnn,
    softmax,
)
from fran.losses import Loss, cross_entropy, mse, sequence_cross_entropy
from fran.model import Model, init_weights, summary
from fran.optim import (
    AdadeltaState,
    AdamState,
    ChainState,
    EmptyState,
    Optimizer,
    RmspropState,
    SgdState,
    adadelta,
    adam,
    adamw,
    apply_updates,
    chain,
    clip_by_global_norm,
    rmsprop,
    sgd,
)
from fran.train import TrainingError, evaluate_nn, predict, train_nn, train_step

__version__ = "0.1.0"

memory.keep_freed_memory()  # glibc keeps freed arrays for reuse: see fran/memory.py

__all__ = [
    "AdadeltaState",
    "AdamState",
    "ChainState",
    "CheckpointError",
    "EmptyState",
    "Loss",
    "Model",
    "Optimizer",
    "RmspropState",
    "SaveError",
    "SgdState",
    "TrainingError",
    "activation",
    "adadelta",
    "adam",
    "adamw",
    "apply",
    "apply_updates",
    "apply_with_state",
    "batchnorm",
    "chain",
    "clip_by_global_norm",
    "conv2d",
    "conv2d_transpose",
    "cross_entropy",
    "dense",
    "dropout",
    "evaluate_nn",
    "flatten",
    "init",
    "init_state",
    "init_weights",
    "load",
    "load_checkpoint",
    "maxpooling",
    "mse",
    "network",
    "output_shape",
    "predict",
    "registry",
    "residual",
    "rmsprop",
    "save",
    "save_checkpoint",
    "schedules",
    "sgd",
    "softmax",
    "summary",
    "train_nn",
    "train_step",
    "vjp",
    "vjp_with_state",
]
__all__ += [  # sequences
    "attention",
    "embedding",
    "layernorm",
    "lstm",
    "position_embedding",
    "rnn",
    "sequence_cross_entropy",
]
