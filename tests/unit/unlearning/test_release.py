"""Noisy release (METHOD §3 step 5, §6): Gaussian noise of the stated σ, OS-seeded generator."""

from __future__ import annotations

import math

import pytest
import torch

from app.unlearning.release import noisy_release


@pytest.mark.parametrize("sigma", [0.01, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_has_the_stated_std_and_zero_mean(sigma: float, dtype: torch.dtype) -> None:
    p = 20_000
    params = torch.linspace(-3, 3, p, dtype=dtype)
    released = noisy_release(params, sigma)
    noise = (released - params).double()
    assert released.dtype == dtype and released.shape == params.shape
    assert abs(float(noise.std()) / sigma - 1) < 0.05
    # Mean of p draws has std σ/√p; 5 standard errors.
    assert abs(float(noise.mean())) < 5 * sigma / math.sqrt(p)


def test_two_releases_differ_and_input_is_untouched() -> None:
    params = torch.zeros(10_000)
    a = noisy_release(params, 0.1)
    b = noisy_release(params, 0.1)
    assert not torch.equal(a, b)
    assert torch.count_nonzero(params) == 0


def test_global_rng_state_does_not_determine_the_noise() -> None:
    params = torch.zeros(1000)
    torch.manual_seed(0)
    a = noisy_release(params, 1.0)
    torch.manual_seed(0)
    b = noisy_release(params, 1.0)
    assert not torch.equal(a, b)


def test_zero_noise_returns_a_copy() -> None:
    params = torch.arange(5.0)
    out = noisy_release(params, 0.0)
    assert torch.equal(out, params) and out.data_ptr() != params.data_ptr()


@pytest.mark.parametrize("sigma", [-1.0, math.inf, math.nan])
def test_bad_noise_std(sigma: float) -> None:
    with pytest.raises(ValueError, match="noise_std"):
        noisy_release(torch.zeros(3), sigma)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_that_overflows_the_weights_is_refused(dtype: torch.dtype) -> None:
    with pytest.raises(ValueError, match="overflows"):
        noisy_release(torch.zeros(1000, dtype=dtype), 1e308 if dtype == torch.float64 else 1e39)


def test_integer_params_refused() -> None:
    with pytest.raises(ValueError, match="floating"):
        noisy_release(torch.zeros(3, dtype=torch.long), 1.0)


def test_the_noise_is_drawn_from_the_os_seed_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import secrets

    params = torch.zeros(1000)
    draws = iter([7, 7, 8])
    monkeypatch.setattr(secrets, "randbits", lambda k: next(draws))
    a, b, c = (noisy_release(params, 1.0) for _ in range(3))
    assert torch.equal(a, b) and not torch.equal(a, c)
    expected = torch.randn(1000, generator=torch.Generator(device=params.device).manual_seed(7))
    assert torch.equal(a, expected)
