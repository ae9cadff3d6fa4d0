"""Every route × every scope (and no key): 401 without a key, 403 with a key that lacks the
route's declared scope, anything but 401/403 (and never 500) with one that holds it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute

from app.api.main import create_app
from app.api.routes import ROUTERS
from app.db.session import session_scope
from app.services import auth, readiness

SCOPES = sorted(auth.ALL_SCOPES)
PUBLIC = {"/healthz", "/readyz", "/metrics", "/v1/keys", "/admin", "/admin/static/{name}"}
PATH_VALUES = {"number": "1", "name": "admin.js"}


def _declared_scope(route: APIRoute) -> str | None:
    names = {f"require_{s.replace(':', '_')}": s for s in SCOPES}
    found: set[str] = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        name = getattr(dep.call, "__name__", "")
        if name in names:
            found.add(names[name])
        stack.extend(dep.dependencies)
    assert len(found) <= 1, (route.path, found)
    return found.pop() if found else None


def _routes() -> list[tuple[str, str, str | None]]:
    out = []
    for route in (r for router in ROUTERS for r in router.routes):
        if isinstance(route, APIRoute):
            for method in sorted(route.methods - {"HEAD"}):
                out.append((method, route.path, _declared_scope(route)))
    return out


ROUTES = _routes()


def test_the_matrix_covers_the_schema_and_public_routes_are_known():
    schema_paths = set(create_app().openapi()["paths"])
    assert schema_paths <= {path for _, path, _ in ROUTES}
    assert {path for _, path, scope in ROUTES if scope is None} <= PUBLIC
    assert len([r for r in ROUTES if r[2] is not None]) >= 15


def _fill(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "x" * 32), path)


@pytest.fixture
def keys(api) -> dict[str | None, dict[str, str]]:
    out: dict[str | None, dict[str, str]] = {None: {}}
    with session_scope() as s:
        for scope in SCOPES:
            _, plaintext = auth.create_key(s, f"only-{scope}", [scope])
            out[scope] = {"Authorization": f"Bearer {plaintext}"}
    return out


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_route_checks_its_scope(api, keys, monkeypatch, method, path, scope):
    monkeypatch.setattr(readiness, "check_all", list)  # no worker here; readiness has its tests
    url = _fill(path)
    for held, headers in keys.items():
        kwargs: dict[str, Any] = {"headers": headers}
        if method in ("POST", "PUT", "PATCH"):
            kwargs["json"] = {}
        r = api.client.request(method, url, **kwargs)
        assert r.status_code < 500, (method, path, held, r.status_code, r.text)
        if scope is None:
            assert r.status_code not in (401, 403), (method, path, held, r.text)
        elif held is None:
            assert r.status_code == 401, (method, path, r.text)
        elif held in (scope, auth.SCOPE_ADMIN):
            assert r.status_code not in (401, 403), (method, path, held, r.text)
        else:
            assert r.status_code == 403, (method, path, held, r.text)
            assert r.json()["missing_scope"] == scope
