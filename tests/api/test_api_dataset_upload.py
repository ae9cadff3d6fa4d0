"""``POST /v1/datasets/upload``: an accepted .npz (rows, id mapping, content-addressed file) and
every refusal (422 naming the array, 413 past the limit), each leaving no row and no file; then
deletion requests by uploaded sample id and by subject."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from app.db import models as orm
from app.db.session import session_scope
from app.settings import get_settings

PROBLEM = "application/problem+json"
URL = "/v1/datasets/upload"


def npz(compressed: bool = False, **arrays: Any) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def arrays(n: int = 12, **changes: Any) -> dict[str, Any]:
    """A valid upload: uint8 images [n, 1, 2, 3], 3 classes, 4 subjects of 3 samples each."""
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {
        "x": rng.integers(0, 256, size=(n, 1, 2, 3), dtype=np.uint8),
        "y": np.arange(n) % 3,
        "sample_ids": np.array([f"user-{i // 3}/photo-{i}" for i in range(n)]),
        "subject_ids": np.array([f"user-{i // 3}" for i in range(n)]),
        "x_test": rng.integers(0, 256, size=(4, 1, 2, 3), dtype=np.uint8),
        "y_test": np.array([0, 1, 2, 0]),
    }
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


def upload(api, body: bytes, name: str = "faces", **headers: str):
    return api.client.post(URL, params={"name": name}, content=body,
                           headers={**api.admin, **headers})


def stored_files(api) -> list[str]:
    root = api.settings.artifacts_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def sample_rows() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(orm.DatasetSample)) or 0


def refused(api, response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["detail"] and "Traceback" not in response.text
    assert api.counts()["datasets"] == 0 and sample_rows() == 0
    assert stored_files(api) == []
    return body


def test_upload_records_the_dataset_its_ids_and_the_file(api):
    body = npz(**arrays())
    r = upload(api, body)
    assert r.status_code == 201, r.text
    ds = r.json()
    sha = hashlib.sha256(body).hexdigest()
    assert ds["checksum_sha256"] == sha
    assert (ds["source"], ds["n"], ds["n_test"], ds["num_features"], ds["num_classes"]) == \
        ("upload", 12, 4, 6, 3)
    assert ds["input_shape"] == [1, 2, 3]
    assert ds["sample_id_scheme"] == "uploaded" and ds["has_subjects"] is True
    assert r.headers["Location"] == f"/v1/datasets/{ds['id']}"
    assert api.client.get(r.headers["Location"], headers=api.admin).json() == ds
    assert stored_files(api) == [f"{sha[:2]}/{sha}.npz"]
    with session_scope() as s:
        rows = s.execute(select(orm.DatasetSample.row_index, orm.DatasetSample.sample_id,
                                orm.DatasetSample.subject_id)
                         .order_by(orm.DatasetSample.row_index)).all()
    assert rows[4] == (4, "user-1/photo-4", "user-1") and len(rows) == 12


def test_float_flat_integer_ids_without_subjects_or_test_split(api):
    x = np.linspace(-1, 1, 20, dtype=np.float64).reshape(10, 2)
    r = upload(api, npz(compressed=True, x=x, y=np.array([0, 1] * 5, dtype=np.uint8),
                        sample_ids=np.arange(100, 110)))
    assert r.status_code == 201, r.text
    ds = r.json()
    assert (ds["input_shape"], ds["n_test"], ds["has_subjects"]) == ([2], 0, False)
    with session_scope() as s:
        assert s.scalar(select(orm.DatasetSample.sample_id)
                        .where(orm.DatasetSample.row_index == 3)) == "103"


def test_the_same_bytes_twice_share_one_file(api):
    body = npz(**arrays())
    first, second = upload(api, body, "a").json(), upload(api, body, "b").json()
    assert first["id"] != second["id"] and len(stored_files(api)) == 1


def test_idempotency_key_replays_and_refuses_another_file(api):
    body = npz(**arrays())
    first = upload(api, body, **{"Idempotency-Key": "k1"})
    again = upload(api, body, **{"Idempotency-Key": "k1"})
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = upload(api, npz(**arrays(n=9)), **{"Idempotency-Key": "k1"})
    assert other.status_code == 409, other.text
    assert api.counts()["datasets"] == 1


def _object_array_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{**arrays(), "sample_ids": np.array(["a", 1] * 6, dtype=object)})
    return buf.getvalue()


def _zip_with(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


REFUSALS = {
    "not a zip": (b"definitely not an npz", "file", "not an .npz"),
    "empty body": (b"", "file", "not an .npz"),
    "zip without npy": (_zip_with({f"{k}.npy": b"garbage" for k in ("x", "y", "sample_ids")}),
                        "x", "not a readable .npy"),
    "object array": (_object_array_npz(), "sample_ids", "allow_pickle=False"),
    # bytes before the zip: zipfile still finds the members, numpy then reads a "pickle"
    "junk before the zip": (b"--boundary\r\n\r\n" + npz(**arrays()), "file", "never loaded"),
    "missing y": (npz(**arrays(y=None)), "file", "missing required arrays ['y']"),
    "unexpected key": (npz(**arrays(), weights=np.zeros(3)), "file", "unexpected arrays"),
    "x_test alone": (npz(**arrays(y_test=None)), "y_test", "give both or neither"),
    "x int32": (npz(**arrays(x=np.zeros((12, 3), np.int32))), "x", "dtype int32"),
    "x bool": (npz(**arrays(x=np.zeros((12, 3), bool))), "x", "dtype bool"),
    "x 3-d": (npz(**arrays(x=np.zeros((12, 2, 3), np.float32))), "x", "[n, d] or [n, C, H, W]"),
    "x no features": (npz(**arrays(x=np.zeros((12, 0), np.float32))), "x", "no features"),
    "y float": (npz(**arrays(y=np.zeros(12))), "y", "integer class labels"),
    "y 2-d": (npz(**arrays(y=np.zeros((12, 1), int))), "y", "one dimension"),
    "ids float": (npz(**arrays(sample_ids=np.arange(12.0))), "sample_ids", "unicode strings"),
    "ids bytes": (npz(**arrays(sample_ids=np.array([b"a%d" % i for i in range(12)]))),
                  "sample_ids", "unicode strings"),
    "one row": (npz(**arrays(n=1, subject_ids=None)), "x", "at least 2"),
    "y too short": (npz(**arrays(y=np.zeros(11, int))), "y", "11 entries"),
    "ids too short": (npz(**arrays(sample_ids=np.array(["a"]))), "sample_ids", "1 entries"),
    "subjects too long": (npz(**arrays(subject_ids=np.array(["s"] * 13))), "subject_ids",
                          "13 entries"),
    "x_test other shape": (npz(**arrays(x_test=np.zeros((4, 6), np.uint8))), "x_test",
                           "shape [6]"),
    "y_test short": (npz(**arrays(y_test=np.array([0]))), "y_test", "1 entries"),
    "nan": (npz(**arrays(x=np.where(np.eye(12, 4, k=-3) > 0, np.nan, 0.5), x_test=None,
                         y_test=None)), "x", "first in row 3"),
    "inf in test": (npz(**arrays(x=np.full((12, 6), 0.5), x_test=np.full((4, 6), -np.inf))),
                    "x_test", "NaN or infinite"),
    "float64 overflow": (npz(**arrays(x=np.full((12, 6), 1e300), x_test=None, y_test=None)), "x",
                         "as float32"),
    "negative label": (npz(**arrays(y=np.array([0, 1, -1] * 4))), "y", "label -1"),
    "huge label": (npz(**arrays(y=np.array([0, 1, 5000] * 4))), "y", "label 5000"),
    "test label unseen": (npz(**arrays(y_test=np.array([0, 1, 2, 3]))), "y_test", "label 3"),
    "one class": (npz(**arrays(y=np.zeros(12, int))), "y", "single class"),
    "duplicate ids": (npz(**arrays(sample_ids=np.array(["a", "b", "a"] + list("cdefghijk")))),
                      "sample_ids", "more than once"),
    "empty id": (npz(**arrays(sample_ids=np.array([""] + [f"s{i}" for i in range(11)]))),
                 "sample_ids", "empty"),
    "control char id": (npz(**arrays(sample_ids=np.array(["a\x07b"] + [f"s{i}" for i in
                                                                      range(11)]))),
                        "sample_ids", "control characters"),
    "id too long": (npz(**arrays(subject_ids=np.array(["s" * 201] * 12))), "subject_ids",
                    "longer than 200"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_the_array_and_leave_nothing(api, case):
    body, array, words = REFUSALS[case]
    problem = refused(api, upload(api, body), 422)
    assert problem["field"] == array, problem
    assert words in problem["detail"], problem["detail"]


def test_a_form_upload_is_a_415_that_says_how_to_send_the_file(api):
    files = {"file": ("faces.npz", npz(**arrays()), "application/octet-stream")}
    r = api.client.post(URL, params={"name": "faces"}, files=files, headers=api.admin)
    problem = refused(api, r, 415)
    assert "--data-binary" in problem["detail"] and "allow_pickle" not in problem["detail"]


def test_duplicate_ids_are_listed(api):
    ids = np.array(["a", "b", "a", "b"] + [f"s{i}" for i in range(8)])
    problem = refused(api, upload(api, npz(**arrays(sample_ids=ids))), 422)
    assert problem["duplicate_sample_ids"] == ["a", "b"] and problem["duplicate_count"] == 2


@pytest.fixture
def small_limit(api, monkeypatch) -> Iterator[int]:
    limit = len(npz(**arrays())) - 1
    monkeypatch.setattr(api.settings, "max_upload_bytes", limit)
    yield limit


def test_413_from_content_length(api, small_limit):
    problem = refused(api, upload(api, npz(**arrays())), 413)
    assert problem["max_bytes"] == small_limit


def test_413_while_streaming_without_content_length(api, small_limit):
    body = npz(**arrays())

    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to check up front
        for start in range(0, len(body), 1000):
            yield body[start:start + 1000]

    r = api.client.post(URL, params={"name": "x"}, content=chunks(), headers=api.admin)
    assert "content-length" not in {k.lower() for k in r.request.headers}
    problem = refused(api, r, 413)
    assert "reached" in problem["detail"]
    assert list((api.settings.artifacts_dir / ".incoming").iterdir()) == []


def test_decoded_size_is_held_to_the_limit(api, monkeypatch):
    bomb = npz(compressed=True, **arrays(x=np.zeros((12, 200_000), np.float32)))
    monkeypatch.setattr(api.settings, "max_upload_bytes", len(bomb) * 10)
    problem = refused(api, upload(api, bomb), 422)
    assert problem["decoded_bytes"] > len(bomb) * 10


def test_bad_name_and_wrong_scope(api):
    assert upload(api, npz(**arrays()), name="").status_code == 422
    assert upload(api, npz(**arrays()), name="a\x01b").status_code == 422
    r = api.client.post(URL, params={"name": "x"}, content=npz(**arrays()))
    assert r.status_code == 401
    assert api.counts()["datasets"] == 0 and stored_files(api) == []


# --- deletion requests on an uploaded dataset ------------------------------------------------


@pytest.fixture
def uploaded_model(api) -> dict[str, Any]:
    ds = upload(api, npz(**arrays())).json()
    return api.ready_model(dataset_id=ds["id"])


def request_row(request_id: str) -> orm.DeletionRequest:
    with session_scope() as s:
        row = s.get(orm.DeletionRequest, request_id)
        assert row is not None
        return row


def forget(api, model_id: str, body: dict[str, Any]):
    return api.client.post(f"/v1/models/{model_id}/deletion-requests", json=body,
                           headers=api.admin)


def test_uploaded_sample_ids_resolve_to_their_rows(api, uploaded_model):
    r = forget(api, uploaded_model["id"], {"sample_ids": ["user-3/photo-10", "user-0/photo-1"]})
    assert r.status_code == 202, r.text
    assert (r.json()["sample_count"], r.json()["subject_count"]) == (2, None)
    row = request_row(r.json()["id"])
    assert (row.sample_ids, row.subject_ids) == ([1, 10], None)


def test_a_subject_request_forgets_all_its_samples(api, uploaded_model):
    r = forget(api, uploaded_model["id"], {"subject_ids": ["user-2"]})
    assert r.status_code == 202, r.text
    assert (r.json()["sample_count"], r.json()["subject_count"]) == (3, 1)
    row = request_row(r.json()["id"])
    assert (row.sample_ids, row.subject_ids) == ([6, 7, 8], ["user-2"])


def test_unknown_ids_and_subjects_are_named(api, uploaded_model):
    before = api.counts()
    unknown = [f"ghost-{i}" for i in range(25)]
    body = refused_request(api, forget(api, uploaded_model["id"],
                                       {"subject_ids": ["user-1", *unknown]}))
    assert body["unknown_subject_ids"] == unknown[:20] and body["unknown_count"] == 25
    body = refused_request(api, forget(api, uploaded_model["id"], {"sample_ids": ["5", "user-0"]}))
    assert body["unknown_sample_ids"] == ["5", "user-0"]
    assert api.counts() == before


def refused_request(api, r) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    return r.json()


@pytest.mark.parametrize("body", [{}, {"sample_ids": ["user-0/photo-0"], "subject_ids": ["user-0"]},
                                  {"sample_ids": None, "subject_ids": None}])
def test_exactly_one_of_sample_ids_and_subject_ids(api, uploaded_model, body):
    problem = refused_request(api, forget(api, uploaded_model["id"], body))
    assert problem["fields"] == ["sample_ids", "subject_ids"]
    assert "exactly one" in problem["detail"]


def test_subject_request_on_a_dataset_without_subjects(api):
    model = api.ready_model()  # built-in digits: no subject column
    problem = refused_request(api, forget(api, model["id"], {"subject_ids": ["someone"]}))
    assert problem["field"] == "subject_ids" and "no subject column" in problem["detail"]


def test_subject_requests_are_idempotent_and_listed(api, uploaded_model):
    headers = {**api.admin, "Idempotency-Key": "subj-1"}
    url = f"/v1/models/{uploaded_model['id']}/deletion-requests"
    first = api.client.post(url, json={"subject_ids": ["user-1"]}, headers=headers)
    again = api.client.post(url, json={"subject_ids": ["user-1"]}, headers=headers)
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    listed = api.client.get("/v1/deletion-requests", headers=api.admin).json()["items"]
    assert [(i["id"], i["subject_count"]) for i in listed] == [(first.json()["id"], 1)]
    canceled = api.client.post(f"/v1/deletion-requests/{first.json()['id']}/cancel",
                               headers=api.admin)
    assert canceled.json()["status"] == "canceled"


def test_settings_default_limit_is_documented():
    assert get_settings().max_upload_bytes == 1 << 30


def _fail_after_storing(monkeypatch) -> None:
    """The database fails once the rows are flushed and the file is at its address."""
    from sqlalchemy.exc import OperationalError

    from app.api.routes import dataset_upload

    def down(*_a: Any, **_k: Any) -> Any:
        raise OperationalError("COMMIT", {}, Exception("database went away"))

    monkeypatch.setattr(dataset_upload.DatasetPublic, "model_validate", down)


def test_a_failure_after_the_file_is_stored_removes_it(api, monkeypatch):
    _fail_after_storing(monkeypatch)
    r = upload(api, npz(**arrays()))
    assert r.status_code == 503, r.text
    assert api.counts()["datasets"] == 0 and sample_rows() == 0 and stored_files(api) == []


def test_a_failure_keeps_a_file_that_another_dataset_names(api, monkeypatch):
    body = npz(**arrays())
    assert upload(api, body).status_code == 201
    _fail_after_storing(monkeypatch)
    assert upload(api, body).status_code == 503
    sha = hashlib.sha256(body).hexdigest()
    assert api.counts()["datasets"] == 1 and stored_files(api) == [f"{sha[:2]}/{sha}.npz"]
