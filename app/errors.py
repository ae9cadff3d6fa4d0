"""Lethe's error tree. Services raise these; the API maps each base class to problem+json.

::

    LetheError                      500  (never raised for a user's mistake)
    ├── NotFound                    404  an id that does not exist
    ├── InvalidInput                422  well-formed JSON that the service refuses
    ├── StateConflict               409  the resource is in a state that forbids the action
    │   └── IdempotencyConflict     409  an Idempotency-Key reused with another request
    ├── PayloadTooLarge             413  a request body over its size limit
    ├── UnsupportedMediaType        415  a body sent as another media type than the route reads
    ├── Unauthorized                401  no key, or an unknown / revoked key
    └── Forbidden                   403  a valid key without the route's scope

These never subclass ``HTTPException``: services know nothing of HTTP.
"""

from __future__ import annotations

from typing import Any


class LetheError(Exception):
    """Base of every error Lethe raises on purpose."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(LetheError):
    status = 404
    title = "Not found"


class InvalidInput(LetheError):
    status = 422
    title = "Invalid input"


class StateConflict(LetheError):
    status = 409
    title = "Conflict"


class IdempotencyConflict(StateConflict):
    title = "Idempotency key reused"


class PayloadTooLarge(LetheError):
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(LetheError):
    status = 415
    title = "Unsupported media type"


class Unauthorized(LetheError):
    status = 401
    title = "Unauthorized"


class Forbidden(LetheError):
    status = 403
    title = "Forbidden"
