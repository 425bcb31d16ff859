"""Errors that reach a client, and the handlers that turn them into JSON.

Hierarchy: :class:`TidingsError` (a 4xx answer with a machine code, a human message and, where one
input is at fault, the field) → one subclass per status. Services raise these; routes never build
error responses by hand. Anything else escaping a route is a bug: it is logged and answered 500
with no internals.

Every error body has the same shape::

    {"error": "not_found", "message": "post not found", "field": "id"}

Validation errors add ``details``: a list of ``{"field", "message"}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("tidings.errors")
#: deadlock_detected, serialization_failure, lock_not_available: a retry can succeed.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "55P03"})


class TidingsError(Exception):
    """Base of every error answered to a client."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.extra = extra or {}
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return body


class BadRequest(TidingsError):
    status_code = 400
    code = "bad_request"


class Unauthorized(TidingsError):
    status_code = 401
    code = "unauthorized"


class PaymentRequired(TidingsError):
    status_code = 402
    code = "payment_required"


class Forbidden(TidingsError):
    status_code = 403
    code = "forbidden"


class NotFound(TidingsError):
    status_code = 404
    code = "not_found"


class Conflict(TidingsError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(TidingsError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(TidingsError):
    status_code = 415
    code = "unsupported_media_type"


class Unprocessable(TidingsError):
    status_code = 422
    code = "validation_error"


class RateLimited(TidingsError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **kwargs: Any) -> None:
        headers = {"Retry-After": str(max(1, retry_after))}
        super().__init__(message, headers=headers, **kwargs)
        self.retry_after = retry_after


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) if parts else ".".join(str(p) for p in loc)


def validation_body(errors: list[dict[str, Any]] | Any) -> dict[str, Any]:
    """The error body for a list of Pydantic errors: one line naming each field."""
    details = []
    for err in errors:
        field = _field_of(err.get("loc", ()))
        msg = str(err.get("msg", "invalid value"))
        details.append({"field": field, "message": msg})
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5]) or "invalid input"
    body: dict[str, Any] = {"error": "validation_error", "message": summary, "details": details}
    if details:
        body["field"] = details[0]["field"]
    return body


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""

    @app.exception_handler(TidingsError)
    async def _tidings_error(_: Request, exc: TidingsError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(exc.errors()), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error"
        )
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return JSONResponse(
            {"error": code, "message": message},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(IntegrityError)
    async def _integrity_error(_: Request, exc: IntegrityError) -> JSONResponse:
        # Services check uniqueness first; this is the safety net for races between requests.
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
        logger.info("integrity error answered 409: %s", constraint)
        return JSONResponse(
            {
                "error": "conflict",
                "message": "the change conflicts with existing data"
                + (f" ({constraint})" if constraint else ""),
            },
            status_code=409,
        )

    @app.exception_handler(DataError)
    async def _data_error(_: Request, exc: DataError) -> JSONResponse:
        # A value the database cannot hold (NUL byte, out-of-range number, malformed literal)
        # slipped past validation: the input is at fault, not the server.
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else "invalid value"
        logger.info("data error answered 400: %s", first)
        return JSONResponse(
            {"error": "invalid_value", "message": f"a value cannot be stored: {first}"},
            status_code=400,
        )

    @app.exception_handler(OperationalError)
    async def _operational_error(request: Request, exc: OperationalError) -> JSONResponse:
        # A deadlock, serialization failure or lock timeout between concurrent writers (an edit
        # racing the publishing engine): nothing was stored, and the same request can succeed
        # a moment later. Anything else (the database gone) stays a 5xx.
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate in _RETRYABLE_SQLSTATES:
            logger.info("concurrent writers (%s) answered 409", sqlstate)
            return JSONResponse(
                {
                    "error": "conflict",
                    "message": "the data changed while the request ran; nothing was stored, "
                    "try again",
                },
                status_code=409,
                headers={"Retry-After": "1"},
            )
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal_error", "message": "an unexpected error occurred"},
            status_code=500,
        )
