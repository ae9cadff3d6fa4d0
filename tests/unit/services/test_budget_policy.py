"""The lineage caps of METHOD §7: property tests over sequences of batches (hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.budget_policy import Release, lineage_figures, releases_that_fit

N = 10_000
DELTA = 1e-5

caps_strategy = st.fixed_dictionaries({
    "max_epsilon": st.floats(1.0, 1e4),
    "max_delta": st.floats(1.5e-5, 1e-3),
    "max_releases": st.integers(1, 12),
    "max_forgotten_fraction": st.floats(0.001, 0.5),
})
release_strategy = st.builds(Release, noise_multiplier=st.floats(0.3, 5.0), m=st.integers(1, 400),
                             rho=st.sampled_from([0.0, 1e-6, 1e-5]))


@settings(max_examples=40, deadline=None)
@given(caps_strategy, st.lists(release_strategy, min_size=1, max_size=15))
def test_a_published_lineage_never_exceeds_a_cap(caps, batches) -> None:
    """Simulate the worker: publish a batch when the lineage stays within every cap, otherwise
    serve it by a retrain that starts a new, empty lineage."""
    lineage: list[Release] = []
    published, retrains = 0, 0
    for release in batches:
        figures = lineage_figures(lineage + [release], caps, n=N, delta=DELTA)
        if figures.within_caps:
            lineage.append(release)
            published += 1
            assert figures.epsilon <= caps["max_epsilon"]
            assert figures.delta <= caps["max_delta"]
            assert figures.releases == len(lineage) <= caps["max_releases"]
            assert figures.forgotten_fraction <= caps["max_forgotten_fraction"]
        else:
            assert figures.broken  # every refusal names the cap it would break
            lineage, retrains = [], retrains + 1
            assert lineage_figures(lineage, caps, n=N, delta=DELTA).releases == 0  # reset
    assert published + retrains == len(batches)
    assert lineage_figures(lineage, caps, n=N, delta=DELTA).releases == len(lineage)


@settings(max_examples=30, deadline=None)
@given(caps_strategy, st.lists(release_strategy, max_size=4), release_strategy)
def test_projection_is_exactly_the_number_that_fits(caps, lineage, nxt) -> None:
    k = releases_that_fit(lineage, nxt, caps, n=N, delta=DELTA)
    if lineage_figures(lineage, caps, n=N, delta=DELTA).within_caps:
        assert lineage_figures(lineage + [nxt] * k, caps, n=N, delta=DELTA).within_caps
    if k < caps["max_releases"]:
        assert not lineage_figures(lineage + [nxt] * (k + 1), caps, n=N, delta=DELTA).within_caps


def test_noiseless_release_is_unbounded_and_breaks_any_epsilon_cap() -> None:
    caps = {"max_epsilon": 1e300, "max_delta": 0.5, "max_releases": 5, "max_forgotten_fraction": 1.0}
    figures = lineage_figures([Release(0.0, 1)], caps, n=N, delta=DELTA)
    assert math.isinf(figures.epsilon) and not figures.within_caps


def test_rho_adds_to_delta_and_epsilon_composes() -> None:
    caps = {"max_epsilon": 1e9, "max_delta": 0.5, "max_releases": 5, "max_forgotten_fraction": 1.0}
    one = lineage_figures([Release(1.0, 10, 1e-6)], caps, n=N, delta=DELTA)
    two = lineage_figures([Release(1.0, 10, 1e-6)] * 2, caps, n=N, delta=DELTA)
    assert two.delta == DELTA + 2e-6 and one.delta == DELTA + 1e-6
    assert one.epsilon < two.epsilon < 2 * one.epsilon + 1e-9  # composition is sub-additive here
    assert two.forgotten_fraction == 20 / N
