"""What rnn and lstm share: the sequence shape rule and torch's U(-1/sqrt(H), 1/sqrt(H)) init."""

from __future__ import annotations

from fran.validate import sequence_sample


def output_shape(spec, shape):
    T, _ = sequence_sample(spec, shape)
    return (T, spec.hidden)


def init(spec, shape, rng, gates: int):
    """Weights and biases of `gates` stacked blocks of H rows (1 for rnn, 4 for lstm)."""
    T, C = shape
    H = spec.hidden
    a = H**-0.5
    return {
        "w_ih": rng.uniform(-a, a, (gates * H, C)),
        "w_hh": rng.uniform(-a, a, (gates * H, H)),
        "b_ih": rng.uniform(-a, a, gates * H),
        "b_hh": rng.uniform(-a, a, gates * H),
    }
