"""Learning-rate schedules: pure functions returning `lr(step) -> float`, step = the number of
optimizer updates made before this one (0 for the first). Pass one wherever an `lr` is taken:
`adam(cosine(1e-3, total_steps=1000))`.

Each equals a torch.optim.lr_scheduler stepped once after every optimizer.step() (so counted in
steps, not epochs):

    step_decay(lr, step_size, gamma)   StepLR(opt, step_size, gamma)
    exponential(lr, gamma)             ExponentialLR(opt, gamma)
    cosine(lr, total_steps, min_lr)    CosineAnnealingLR(opt, T_max=total_steps, eta_min=min_lr)
    linear_warmup(s, warmup_steps, start_factor)
        SequentialLR(opt, [LinearLR(opt, start_factor, 1.0, total_iters=warmup_steps), S],
                     milestones=[warmup_steps])   (S the scheduler s equals; a number: constant)
"""

from __future__ import annotations

import math
from collections.abc import Callable

from fran.validate import in_range, non_negative_int, positive, positive_int

Schedule = Callable[[int], float]


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """lr * gamma ** (step // step_size), as StepLR(step_size, gamma) stepped per update."""
    fn = "step_decay"
    positive.check(fn, "lr", lr)
    positive_int.check(fn, "step_size", step_size)
    positive.check(fn, "gamma", gamma)

    def schedule(step: int) -> float:
        non_negative_int.check(fn, "step", step)
        return lr * gamma ** (step // step_size)

    schedule.__name__ = f"step_decay(lr={lr}, step_size={step_size}, gamma={gamma})"
    return schedule


def exponential(lr: float, gamma: float) -> Schedule:
    """lr * gamma ** step, as ExponentialLR(gamma) stepped per update."""
    fn = "exponential"
    positive.check(fn, "lr", lr)
    positive.check(fn, "gamma", gamma)

    def schedule(step: int) -> float:
        non_negative_int.check(fn, "step", step)
        return lr * gamma**step

    schedule.__name__ = f"exponential(lr={lr}, gamma={gamma})"
    return schedule


def cosine(lr: float, total_steps: int, min_lr: float = 0.0) -> Schedule:
    """min_lr + (lr - min_lr) (1 + cos(pi step / total_steps)) / 2, as
    CosineAnnealingLR(T_max=total_steps, eta_min=min_lr) stepped per update.

    Like torch's, it is periodic: past total_steps it rises again (period 2 total_steps); size
    total_steps to the whole run.
    """
    fn = "cosine"
    positive.check(fn, "lr", lr)
    positive_int.check(fn, "total_steps", total_steps)
    in_range(0, lr).check(fn, "min_lr", min_lr)  # [0, lr]

    def schedule(step: int) -> float:
        non_negative_int.check(fn, "step", step)
        return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * step / total_steps)) / 2

    schedule.__name__ = f"cosine(lr={lr}, total_steps={total_steps}, min_lr={min_lr})"
    return schedule


def linear_warmup(schedule_or_lr, warmup_steps: int, start_factor: float = 1 / 3) -> Schedule:
    """A linear warm-up from start_factor * lr0 towards lr0 over warmup_steps, then the schedule
    started afresh: lr0 * (start_factor + (1 - start_factor) step / warmup_steps) for
    step < warmup_steps, then schedule(step - warmup_steps); lr0 = schedule(0) (or the number).

    Equals SequentialLR([LinearLR(start_factor, end_factor=1.0, total_iters=warmup_steps), S],
    milestones=[warmup_steps]), S the torch scheduler equal to the schedule (e.g.
    CosineAnnealingLR); start_factor in (0, 1] defaults to LinearLR's 1/3.
    """
    fn = "linear_warmup"
    if callable(schedule_or_lr):
        after = schedule_or_lr
    else:
        positive.check(fn, "schedule_or_lr (a schedule or an lr)", schedule_or_lr)
        constant = float(schedule_or_lr)

        def after(step: int) -> float:
            return constant

    positive_int.check(fn, "warmup_steps", warmup_steps)
    in_range(0, 1, closed="right").check(fn, "start_factor", start_factor)

    def schedule(step: int) -> float:
        non_negative_int.check(fn, "step", step)
        if step >= warmup_steps:
            return after(step - warmup_steps)
        return after(0) * (start_factor + (1 - start_factor) * step / warmup_steps)

    inner = getattr(schedule_or_lr, "__name__", repr(schedule_or_lr))
    schedule.__name__ = (
        f"linear_warmup({inner}, warmup_steps={warmup_steps}, start_factor={start_factor})"
    )
    return schedule
