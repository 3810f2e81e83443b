"""The cost of the params check every public entry point runs (fran.engine.check_params).

    PYTHONPATH=. python benchmarks/params_check.py [--calls 20000]

Prints the time per check of LeNet-5's params and state (the expected shapes cached per spec and
input shape, so a call is a walk over the leaves) beside one fran.apply on a batch of 64, and the
check's share of it. Take the numbers on a quiet machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fran
from fran import conv2d, dense, engine, flatten, maxpooling, network, softmax

LENET = network(
    [
        conv2d(k=5, channels=6, activation="tanh"),
        maxpooling(k=2, stride=2),
        conv2d(k=3, channels=16, activation="tanh"),
        maxpooling(k=2, stride=2),
        flatten(),
        dense(120, activation="tanh"),
        dense(84, activation="tanh"),
        dense(10, activation="tanh"),
        softmax(),
    ]
)


def per_call(fn, calls: int) -> float:
    fn()  # warm: the shapes cache, the first allocations
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000, help="checks to time (default 20000)")
    args = parser.parse_args()
    if args.calls < 1:
        parser.error(f"--calls must be >= 1, got {args.calls}")
    model = fran.init_weights(LENET, 28, 28)
    x = np.zeros((64, 1, 28, 28), np.float32)
    check = per_call(
        lambda: engine.check_params(
            "bench", model.spec, model.params, model.input_shape, state=model.state
        ),
        args.calls,
    )
    forward = per_call(lambda: fran.apply(model.spec, model.params, x), max(1, args.calls // 400))
    print(f"check_params, LeNet-5 params and state: {check * 1e6:.1f} us per call")
    print(f"fran.apply, LeNet-5 on 64 samples:      {forward * 1e3:.2f} ms per call")
    print(f"the check's share of an apply:           {check / forward:.2%}")


if __name__ == "__main__":
    main()
