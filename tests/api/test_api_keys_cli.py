"""``lethe keys create|list|revoke`` against the local database, then the key over HTTP."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from app.cli import cli
from app.db.models import ApiKey
from app.db.session import session_scope
from app.services.auth import hash_key


def _run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    return result


def test_create_list_revoke(api):
    created = _run("keys", "create", "--scope", "requests:write", "--scope", "requests:read",
                   "--name", "app-1", "--json")
    assert created.exit_code == 0, created.output
    out = json.loads(created.output)
    assert out["scopes"] == ["requests:read", "requests:write"] and out["name"] == "app-1"
    with session_scope() as s:
        row = s.get(ApiKey, out["id"])
        assert row is not None and row.key_sha256 == hash_key(out["key"])
        assert out["key"] not in json.dumps([row.name, row.scopes, row.key_sha256])

    headers = {"Authorization": f"Bearer {out['key']}"}
    model = api.ready_model()
    assert api.forget(model["id"], ["1"], headers=headers).status_code == 202
    assert api.client.get(f"/v1/models/{model['id']}", headers=headers).status_code == 403

    listed = _run("keys", "list", "--json")
    assert listed.exit_code == 0
    rows = {r["id"]: r for r in json.loads(listed.output)}
    assert rows[out["id"]]["revoked_at"] is None and "key" not in rows[out["id"]]
    plain = _run("keys", "list")
    assert out["id"] in plain.output and out["key"] not in plain.output

    revoked = _run("keys", "revoke", out["id"])
    assert revoked.exit_code == 0, revoked.output
    assert api.forget(model["id"], ["2"], headers=headers).status_code == 401
    assert json.loads(_run("keys", "list", "--json").output)[-1]["revoked_at"] is not None


def test_human_output_shows_the_key_once(api):
    created = _run("keys", "create", "--scope", "admin", "--name", "ops")
    assert created.exit_code == 0
    assert "shown once" in created.output


def test_bad_scope_and_unknown_key(api):
    bad = _run("keys", "create", "--scope", "root", "--name", "x")
    assert bad.exit_code == 2 and "unknown" in bad.output
    missing = _run("keys", "revoke", "nope")
    assert missing.exit_code == 2 and "no API key" in missing.output
