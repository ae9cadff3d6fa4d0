"""Registering Fashion-MNIST over HTTP records its size, shape and content checksum; it needs
Debian's dataset-fashion-mnist (skipped without it, required under LETHE_REQUIRE_INTEGRATION=1)."""

from __future__ import annotations

import os

import pytest

from app.unlearning import fashion_mnist as fm


def test_register_fashion_mnist(api):
    if any(not (fm.SYSTEM_DIR / name).is_file() for name in fm.FASHION_MNIST_SHA256):
        reason = f"{fm.APT_PACKAGE} is not installed"
        if os.environ.get("LETHE_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"LETHE_REQUIRE_INTEGRATION=1 but {reason}")
        pytest.skip(reason)
    r = api.client.post("/v1/datasets", json={"name": "fashion", "source": "fashion-mnist"},
                        headers=api.admin)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["n"], body["n_test"], body["num_features"], body["num_classes"]) == (60000, 10000,
                                                                                       784, 10)
    assert body["input_shape"] == [1, 28, 28] and body["sample_id_scheme"] == "row-index"
    assert body["checksum_sha256"] == fm.fashion_mnist_checksum(api.settings.resolved_data_dir)
