"""The demo's acceptance figures and weight distances, on explicit small cases."""

from __future__ import annotations

import math

import numpy as np

from app.demo import _checks, _distances


def _weights(shift: float) -> dict[str, np.ndarray]:
    return {"0.weight": np.full((2, 3), shift, np.float32), "0.bias": np.full(2, shift, np.float32)}


def test_distances_are_euclidean_over_every_tensor() -> None:
    d = _distances({"original": _weights(0.0), "unlearned": _weights(1.0),
                    "retrained": _weights(3.0)}, sigma=0.5)
    assert math.isclose(d["unlearned_to_original"], math.sqrt(8))
    assert math.isclose(d["unlearned_to_retrained"], 2 * math.sqrt(8))
    assert math.isclose(d["original_to_retrained"], 3 * math.sqrt(8))
    assert math.isclose(d["expected_noise_norm"], 0.5 * math.sqrt(8))


def test_checks_use_the_issue_thresholds_in_points() -> None:
    acc = {"unlearned": {"forget": 0.975, "test": 0.960},
           "retrained": {"forget": 0.955, "test": 0.950}}
    k = _checks(acc, sha_ok=True)
    assert math.isclose(k["forget_gap_points"], 2.0) and k["forget_within_2_points"]
    assert math.isclose(k["test_gap_points"], 1.0) and k["test_within_1_point"]
    acc["unlearned"]["forget"] = 0.9751
    acc["unlearned"]["test"] = 0.9611
    k = _checks(acc, sha_ok=False)
    assert not k["forget_within_2_points"] and not k["test_within_1_point"] and not k["sha256_ok"]
