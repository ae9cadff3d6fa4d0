"""The σ Lethe picks never undershoots: recomputed by the independent implementation of
``lethe verify`` (mpmath, [BW18] Thm 8), it certifies at most the target ε, and it is within 1% of
the smallest σ that does."""

from __future__ import annotations

import itertools

import pytest

from app.unlearning.calibration import analytic_epsilon, analytic_sigma
from app.verify import epsilon_for_sigma, sigma_for_epsilon

GRID = list(itertools.product([0.1, 1.0, 40.0], [0.05, 0.5, 1.0, 5.0, 50.0], [1e-10, 1e-5, 1e-2]))


@pytest.mark.parametrize(("sensitivity", "epsilon", "delta"), GRID)
def test_sigma_never_undershoots_and_is_tight(sensitivity: float, epsilon: float, delta: float) -> None:
    sigma = analytic_sigma(sensitivity, epsilon, delta)
    assert epsilon_for_sigma(sensitivity, sigma, delta) <= epsilon * (1 + 1e-12)
    smallest = sigma_for_epsilon(sensitivity, epsilon, delta)
    assert smallest <= sigma <= 1.01 * smallest


@pytest.mark.parametrize(("sensitivity", "noise_std", "delta"),
                         [(40.0, 0.01, 1e-5), (1.0, 1.0, 1e-5), (2.0, 0.3, 1e-8)])
def test_epsilon_never_understates(sensitivity: float, noise_std: float, delta: float) -> None:
    eps = analytic_epsilon(sensitivity, noise_std, delta)
    independent = epsilon_for_sigma(sensitivity, noise_std, delta)
    assert independent <= eps <= independent * 1.01
