"""Concurrent clients against the embedded default (SQLite): no 500, and every accepted
deletion request is stored (a 503 would be allowed, and would store nothing)."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import httpx


def test_forty_concurrent_posts_and_reads(live_service) -> None:
    service = live_service()
    dataset = service.http.post("/v1/datasets", json={"name": "digits", "source": "digits"}).json()
    model_id = service.http.post("/v1/models", json={
        "name": "m", "dataset_id": dataset["id"], "architecture": "logreg",
        "training": {"epochs": 2}, "batching": {"max_samples": 100000, "max_wait_seconds": 3600},
    }).json()["id"]
    headers = dict(service.http.headers)
    base = str(service.http.base_url)

    def post(i: int) -> int:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
            return http.post(f"/v1/models/{model_id}/deletion-requests",
                             json={"sample_ids": [str(i)]}).status_code

    def read(_: int) -> int:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
            return http.get(f"/v1/models/{model_id}/budget").status_code

    with ThreadPoolExecutor(max_workers=80) as pool:
        posts = pool.map(post, range(40))
        reads = pool.map(read, range(40))
        post_codes, read_codes = list(posts), list(reads)
    assert 500 not in post_codes + read_codes, (post_codes, read_codes)
    assert set(post_codes) <= {202, 503} and set(read_codes) <= {200, 503}
    with sqlite3.connect(service.home / "lethe.db") as db:
        stored = db.execute("SELECT count(*) FROM deletion_requests WHERE model_id = ?",
                            (model_id,)).fetchone()[0]
    assert stored == post_codes.count(202)
