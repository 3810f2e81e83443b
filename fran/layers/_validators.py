"""The layers' old validators, now fran.validate's: kept only for the modules that still import
them from here (fran/engine.py, fran/layers/batchnorm.py, conv2d.py, conv2d_transpose.py).
Delete this module once they import fran.validate and fran.layers._repr instead."""

from __future__ import annotations

from fran.layers._repr import compact_repr
from fran.validate import image_sample as chw_shape
from fran.validate import non_negative_int, one_of, positive_int

__all__ = ["chw_shape", "compact_repr", "non_negative_int", "one_of", "positive_int"]
