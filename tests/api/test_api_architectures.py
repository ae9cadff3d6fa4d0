"""Architectures over HTTP: the convolutional built-ins with their width, registered names, and
422s naming the field (unknown name with the choices; a conv net on samples that are not images)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from app.settings import get_settings


def test_convnets_are_created_with_their_width(api) -> None:
    ds = api.dataset()
    for architecture, width in (("allcnn", 8), ("resnet18", None)):
        model = api.model(ds["id"], architecture=architecture, training={"width": width})
        assert model["architecture"] == architecture and model["training"]["width"] == width
        assert model["status"] == "training"


def test_width_is_validated(api) -> None:
    ds = api.dataset()
    before = api.counts()
    for width in (0, 2000, "wide"):
        r = api.client.post("/v1/models", headers=api.admin, json={
            "name": "m", "dataset_id": ds["id"], "architecture": "allcnn",
            "training": {"width": width}})
        assert r.status_code == 422, r.text
        assert "training.width" in [e["field"] for e in r.json()["errors"]]
    assert api.counts() == before


def test_unknown_architecture_lists_the_choices(api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETHE_ARCHITECTURES", json.dumps({"cnn": "tests.owner_architectures:small_cnn"}))
    get_settings.cache_clear()
    try:
        ds = api.dataset()
        r = api.client.post("/v1/models", headers=api.admin, json={
            "name": "m", "dataset_id": ds["id"], "architecture": "vgg16"})
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["field"] == "architecture"
        assert body["choices"] == ["mlp", "logreg", "allcnn", "resnet18", "cnn"]
        assert api.model(ds["id"], architecture="cnn")["architecture"] == "cnn"
        bad_name = api.client.post("/v1/models", headers=api.admin, json={
            "name": "m", "dataset_id": ds["id"], "architecture": "a b"})
        assert bad_name.status_code == 422
    finally:
        monkeypatch.delenv("LETHE_ARCHITECTURES")
        get_settings.cache_clear()


def test_a_convnet_on_samples_that_are_not_images_is_refused(api) -> None:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()  # 2x3-pixel images: too small for a conv net's stride-2 stages
    np.savez(buf, x=rng.integers(0, 256, size=(12, 1, 2, 3), dtype=np.uint8), y=np.arange(12) % 3,
             x_test=rng.integers(0, 256, size=(4, 1, 2, 3), dtype=np.uint8), y_test=np.arange(4) % 3,
             sample_ids=np.array([f"s{i}" for i in range(12)]))
    up = api.client.post("/v1/datasets/upload", params={"name": "tiny"}, content=buf.getvalue(),
                         headers=api.admin)
    assert up.status_code == 201, up.text
    before = api.counts()
    r = api.client.post("/v1/models", headers=api.admin, json={
        "name": "m", "dataset_id": up.json()["id"], "architecture": "resnet18"})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "architecture"
    assert "needs image samples (C, H, W) of at least 4x4 pixels" in r.json()["detail"]
    assert "[1, 2, 3]" in r.json()["detail"]
    assert api.counts() == before
    api.model(up.json()["id"], architecture="mlp")  # a flat network takes any shape
