"""Hypothesis profiles: `dev` (few examples, for editing) and `ci` (derandomized, the tox default).

Pick one with HYPOTHESIS_PROFILE=dev|ci; unset means dev. tox sets ci.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=15, deadline=None)
settings.register_profile(
    "ci",
    max_examples=200,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
