"""The built-in layers. Importing this package registers them, exactly as a plugin registers its own."""

from fran.layers.activation import activation
from fran.layers.activations import ACTIVATIONS, register_activation
from fran.layers.batchnorm import batchnorm
from fran.layers.conv2d import conv2d
from fran.layers.conv2d_transpose import conv2d_transpose
from fran.layers.dense import dense
from fran.layers.dropout import dropout
from fran.layers.flatten import flatten
from fran.layers.maxpooling import maxpooling
from fran.layers.residual import residual
from fran.layers.softmax import softmax

__all__ = [
    "ACTIVATIONS",
    "activation",
    "batchnorm",
    "conv2d",
    "conv2d_transpose",
    "dense",
    "dropout",
    "flatten",
    "maxpooling",
    "register_activation",
    "residual",
    "softmax",
]
