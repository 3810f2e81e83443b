"""Every fran optimizer, transformation and lr schedule step for step against torch, in float64.

Random configurations drawn by hypothesis; each run makes N_STEPS (>= 20) updates from the same
params and gradient sequence, and compares every param (and lr) after each. torch is imported in
the tests only.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fran
from fran import schedules
from fran.tree import freeze, tree_items, tree_map

torch.set_num_threads(1)

RTOL = 1e-9
N_STEPS = 25
PARAM_SHAPES = ({"w": (3, 4), "b": (4,)}, {}, {"w": (2, 3, 2, 2), "b": (2,)})
SOME = settings(max_examples=min(settings.default.max_examples, 40), deadline=None)

seeds = st.integers(0, 2**32 - 1)
lrs = st.floats(1e-4, 0.5)
fractions = st.one_of(st.just(0.0), st.floats(0.0, 0.99))
decays = st.one_of(st.just(0.0), st.floats(0.0, 0.5))


def assert_close(actual, expected, what: str) -> None:
    expected = expected.detach().numpy()
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, what
    atol = RTOL * float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=atol, err_msg=what)


def run(optimizer, make_torch_opt, seed, make_scheduler=None, clip=None) -> None:
    """N_STEPS updates in fran and in torch (optionally clip_grad_norm_ first, a scheduler after)."""
    rng = np.random.default_rng(seed)
    params = freeze(tuple({k: rng.normal(size=s) for k, s in d.items()} for d in PARAM_SHAPES))
    tensors = {path: torch.tensor(a, requires_grad=True) for path, a in tree_items(params)}
    opt_t = make_torch_opt(list(tensors.values()))
    sched_t = make_scheduler(opt_t) if make_scheduler else None
    state = optimizer.init(params)
    for step in range(N_STEPS):
        # mixed magnitudes, near-zero gradients included (where eps matters)
        scale = rng.choice([1e-6, 1e-2, 1.0, 10.0])
        grads = freeze(tree_map(lambda a, s=scale: rng.normal(size=a.shape) * s, params))
        updates, state = optimizer.update(grads, state, params)
        params = fran.apply_updates(params, updates)
        for path, g in tree_items(grads):
            tensors[path].grad = torch.tensor(g)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(list(tensors.values()), clip)
        opt_t.step()
        if sched_t is not None:
            sched_t.step()
        for path, a in tree_items(params):
            assert_close(a, tensors[path], f"{optimizer.name} step {step + 1} {path}")


@SOME
@given(
    lr=lrs,
    momentum=fractions,
    nesterov=st.booleans(),
    weight_decay=decays,
    seed=seeds,
)
def test_sgd(lr, momentum, nesterov, weight_decay, seed):
    nesterov = nesterov and momentum > 0

    def make(ps):
        return torch.optim.SGD(
            ps, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )

    opt = fran.sgd(lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    run(opt, make, seed)


@SOME
@given(
    lr=lrs,
    b1=st.floats(0.0, 0.99),
    b2=st.floats(0.5, 0.9999),
    eps=st.floats(1e-10, 1e-2),
    weight_decay=decays,
    seed=seeds,
)
def test_adam(lr, b1, b2, eps, weight_decay, seed):
    def make(ps):
        return torch.optim.Adam(ps, lr=lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay)

    run(fran.adam(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay), make, seed)


@SOME
@given(
    lr=lrs,
    b1=st.floats(0.0, 0.99),
    b2=st.floats(0.5, 0.9999),
    eps=st.floats(1e-10, 1e-2),
    weight_decay=st.one_of(st.just(0.01), decays),
    seed=seeds,
)
def test_adamw(lr, b1, b2, eps, weight_decay, seed):
    def make(ps):
        return torch.optim.AdamW(ps, lr=lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay)

    run(fran.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay), make, seed)


@SOME
@given(
    lr=st.floats(1e-4, 0.1),
    alpha=st.floats(0.5, 0.999),
    eps=st.floats(1e-10, 1e-2),
    momentum=fractions,
    seed=seeds,
)
def test_rmsprop(lr, alpha, eps, momentum, seed):
    def make(ps):
        return torch.optim.RMSprop(ps, lr=lr, alpha=alpha, eps=eps, momentum=momentum)

    run(fran.rmsprop(lr, alpha=alpha, eps=eps, momentum=momentum), make, seed)


@SOME
@given(lr=st.floats(0.01, 2.0), rho=st.floats(0.5, 0.99), eps=st.floats(1e-8, 1e-3), seed=seeds)
def test_adadelta(lr, rho, eps, seed):
    def make(ps):
        return torch.optim.Adadelta(ps, lr=lr, rho=rho, eps=eps)

    run(fran.adadelta(lr, rho=rho, eps=eps), make, seed)


def test_defaults_by_name():
    makers = {
        "sgd": lambda ps: torch.optim.SGD(ps, lr=0.01),
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "rmsprop": torch.optim.RMSprop,
        "adadelta": torch.optim.Adadelta,
    }
    for seed, (name, make) in enumerate(makers.items()):
        run(fran.optim.get_optimizer(name), make, seed)


@SOME
@given(max_norm=st.floats(1e-3, 20.0), lr=st.floats(1e-4, 0.1), seed=seeds)
def test_chain_clip_adam_equals_clip_grad_norm_and_adam(max_norm, lr, seed):
    opt = fran.chain(fran.clip_by_global_norm(max_norm), fran.adam(lr))
    run(opt, lambda ps: torch.optim.Adam(ps, lr=lr), seed, clip=max_norm)


@SOME
@given(max_norm=st.floats(1e-3, 20.0), lr=st.floats(1e-4, 0.5), seed=seeds)
def test_clip_alone_then_sgd(max_norm, lr, seed):
    opt = fran.chain(fran.clip_by_global_norm(max_norm), fran.sgd(lr, momentum=0.9))
    run(opt, lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9), seed, clip=max_norm)


# ---------------------------------------------------------------- schedules

SCHEDULES = {
    "step_decay": (
        st.tuples(lrs, st.integers(1, 8), st.floats(0.1, 0.99)),
        lambda lr, n, g: schedules.step_decay(lr, n, g),
        lambda lr, n, g: lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=n, gamma=g),
    ),
    "exponential": (
        st.tuples(lrs, st.floats(0.5, 0.999)),
        lambda lr, g: schedules.exponential(lr, g),
        lambda lr, g: lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=g),
    ),
    "cosine": (
        st.tuples(lrs, st.integers(5, 40), st.floats(0.0, 1.0)),
        lambda lr, n, f: schedules.cosine(lr, n, f * lr),
        lambda lr, n, f: (
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=n, eta_min=f * lr)
        ),
    ),
    "linear_warmup_cosine": (
        st.tuples(lrs, st.integers(1, 10), st.floats(0.01, 1.0), st.integers(5, 30)),
        lambda lr, w, s, n: schedules.linear_warmup(schedules.cosine(lr, n), w, s),
        lambda lr, w, s, n: (
            lambda o: torch.optim.lr_scheduler.SequentialLR(
                o,
                [
                    torch.optim.lr_scheduler.LinearLR(o, start_factor=s, total_iters=w),
                    torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=n),
                ],
                milestones=[w],
            )
        ),
    ),
    "linear_warmup_constant": (
        st.tuples(lrs, st.integers(1, 10), st.floats(0.01, 1.0)),
        lambda lr, w, s: schedules.linear_warmup(lr, w, s),
        lambda lr, w, s: (
            lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=s, total_iters=w)
        ),
    ),
}


def torch_lrs(lr, make_scheduler, n):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = make_scheduler(opt)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's step(0) deprecation warning
        for _ in range(n):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return out


@SOME
@given(data=st.data())
def test_schedules_equal_torch_schedulers(data):
    for name, (args, fran_schedule, torch_scheduler) in SCHEDULES.items():
        a = data.draw(args, label=name)
        schedule = fran_schedule(*a)
        expected = torch_lrs(a[0], torch_scheduler(*a), 3 * N_STEPS)
        actual = [schedule(step) for step in range(3 * N_STEPS)]
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=1e-15, err_msg=f"{name}{a}")


@SOME
@given(name=st.sampled_from(sorted(SCHEDULES)), data=st.data(), seed=seeds)
def test_a_schedule_drives_adam_and_sgd_as_a_torch_scheduler(name, data, seed):
    args, fran_schedule, torch_scheduler = SCHEDULES[name]
    a = data.draw(args, label="args")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run(
            fran.adam(fran_schedule(*a)),
            lambda ps: torch.optim.Adam(ps, lr=a[0]),
            seed,
            make_scheduler=torch_scheduler(*a),
        )
        run(
            fran.sgd(fran_schedule(*a), momentum=0.9, nesterov=True),
            lambda ps: torch.optim.SGD(ps, lr=a[0], momentum=0.9, nesterov=True),
            seed,
            make_scheduler=torch_scheduler(*a),
        )


@SOME
@given(lr=lrs, momentum=st.floats(0.01, 0.99), weight_decay=decays, seed=seeds)
def test_chains_written_by_hand_equal_torch(lr, momentum, weight_decay, seed):
    """The primitives composed by a user, not through a constructor: SGD and RMSprop."""
    sgd = fran.chain(
        fran.add_decayed_weights(weight_decay),
        fran.trace(momentum, nesterov=True),
        fran.scale_by_learning_rate(lr),
    )
    run(
        sgd,
        lambda ps: torch.optim.SGD(
            ps, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay
        ),
        seed,
    )
    rms = fran.chain(
        fran.scale_by_rms(0.9, 1e-3), fran.trace(momentum), fran.scale_by_learning_rate(lr / 10)
    )
    run(
        rms,
        lambda ps: torch.optim.RMSprop(ps, lr=lr / 10, alpha=0.9, eps=1e-3, momentum=momentum),
        seed,
    )
