"""OpenAPI-driven fuzzing (schemathesis strategies, driven by hypothesis) over every operation of
the schema: whatever the body, path or query, the answer is never a 5xx, and an error is
problem+json."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE,
                                  schemathesis.GenerationMode.NEGATIVE])
def test_no_operation_answers_5xx(api, mode: schemathesis.GenerationMode) -> None:  # type: ignore[no-untyped-def]
    """POSITIVE: inputs the schema allows; NEGATIVE: inputs it forbids (wrong types, missing or
    extra fields, out-of-range numbers) — every kind of invalid body, path and query."""
    # A dataset and a model exist, so fuzzed requests also reach code past the 404s.
    client, headers = api.client, api.admin
    dataset = client.post("/v1/datasets", json={"name": "d", "source": "digits"}, headers=headers).json()
    client.post("/v1/models", json={"name": "m", "dataset_id": dataset["id"], "architecture": "logreg"},
                headers=headers)
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    fuzzed = 0

    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(headers=headers)
            where = f"{case.method} {case.formatted_path}"
            # /readyz answers 503 by design here: no worker runs in these tests.
            allowed = 504 if case.path == "/readyz" else 500
            assert response.status_code < allowed, (where, response.text[:300])
            if response.status_code >= 400 and response.status_code != 405:
                content_type = response.headers["content-type"]  # schemathesis: a list of values
                assert str(content_type[0] if isinstance(content_type, list) else content_type) \
                    .startswith("application/problem+json"), where

        try:
            check()
            fuzzed += 1
        except Unsatisfiable:
            # NEGATIVE mode: an operation with nothing to violate (no body, no parameters).
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
    assert fuzzed >= 10
