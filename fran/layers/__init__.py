"""The built-in layers. Importing this package registers them, exactly as a plugin registers its own."""

from fran.layers.activation import activation
from fran.layers.activations import ACTIVATIONS, register_activation
from fran.layers.attention import attention
from fran.layers.batchnorm import batchnorm
from fran.layers.conv2d import conv2d
from fran.layers.conv2d_transpose import conv2d_transpose
from fran.layers.dense import dense
from fran.layers.dropout import dropout
from fran.layers.embedding import embedding
from fran.layers.flatten import flatten
from fran.layers.layernorm import layernorm
from fran.layers.lstm import lstm
from fran.layers.maxpooling import maxpooling
from fran.layers.position_embedding import position_embedding
from fran.layers.residual import residual
from fran.layers.rnn import rnn
from fran.layers.softmax import softmax

__all__ = [
    "ACTIVATIONS",
    "activation",
    "attention",
    "batchnorm",
    "conv2d",
    "conv2d_transpose",
    "dense",
    "dropout",
    "embedding",
    "flatten",
    "layernorm",
    "lstm",
    "maxpooling",
    "position_embedding",
    "register_activation",
    "residual",
    "rnn",
    "softmax",
]
