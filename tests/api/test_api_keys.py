"""API keys: stored hashed, bootstrap key idempotent and rotatable, scopes checked."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db.models import ApiKey
from app.db.session import session_scope
from app.errors import Forbidden, InvalidInput, Unauthorized
from app.services import auth


def test_keys_are_stored_hashed(api):
    with session_scope() as s:
        key, plaintext = auth.create_key(s, "app", ["requests:write", "requests:read"])
        assert key.key_sha256 == auth.hash_key(plaintext) != plaintext
        assert len(plaintext) >= 43
        assert key.scopes == ["requests:read", "requests:write"]
        assert auth.authenticate(s, plaintext).id == key.id
        with pytest.raises(InvalidInput):
            auth.create_key(s, "bad", ["root"])


def test_bootstrap_key_is_idempotent_and_rotates(api):
    with session_scope() as s:
        first = auth.ensure_bootstrap_admin_key(s, "k1")
        assert auth.ensure_bootstrap_admin_key(s, "k1").id == first.id
    with session_scope() as s:
        second = auth.ensure_bootstrap_admin_key(s, "k2")
        assert second.id != first.id and second.scopes == ["admin"]
    with session_scope() as s:
        with pytest.raises(Unauthorized):
            auth.authenticate(s, "k1")  # rotated out
        assert auth.authenticate(s, "k2").id == second.id
        live = s.scalars(select(ApiKey).where(ApiKey.name == auth.BOOTSTRAP_KEY_NAME,
                                              ApiKey.revoked_at.is_(None))).all()
        assert [k.id for k in live] == [second.id]


def test_admin_implies_every_scope(api):
    with session_scope() as s:
        admin = auth.ensure_bootstrap_admin_key(s, "k3")
        for scope in auth.ALL_SCOPES:
            auth.require_scope(admin, scope)
        reader, _ = auth.create_key(s, "reader", ["models:read"])
        auth.require_scope(reader, "models:read")
        with pytest.raises(Forbidden, match="requests:write"):
            auth.require_scope(reader, "requests:write")
