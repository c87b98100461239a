"""Domain errors, each mapped once (in server.app) to an HTTP status and a stable error code."""

from __future__ import annotations

from typing import Any


class TrinityError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Unauthenticated(TrinityError):
    status = 401
    code = "unauthenticated"


class Forbidden(TrinityError):
    status = 403
    code = "forbidden"


class NotFound(TrinityError):
    status = 404
    code = "not_found"


class Conflict(TrinityError):
    status = 409
    code = "conflict"


class Invalid(TrinityError):
    status = 422
    code = "invalid"


class Gone(TrinityError):
    status = 410
    code = "gone"


class TooLarge(TrinityError):
    status = 413
    code = "too_large"


class RateLimited(TrinityError):
    status = 429
    code = "rate_limited"
