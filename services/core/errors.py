"""Typed errors that name what is at fault, so that the HTTP layer can turn them into clear 4xx answers."""

from __future__ import annotations


class TrawlError(Exception):
    """Base of every error the platform raises on purpose."""


class ValidationError(TrawlError, ValueError):
    """Bad input: `field` names the offending field (dotted path), `message` says what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ItemValidationError(ValidationError):
    """An item breaks a limit or a declared type."""


class FilterError(ValidationError):
    """A filter names an unknown field or uses an operator the field's type does not support."""


class EngineError(TrawlError):
    """The engine failed in a way the caller cannot fix by changing its input."""


class IndexNotFoundError(EngineError):
    """The alias or index version does not exist."""


class TransientEngineError(EngineError):
    """The engine is busy or unreachable (429, 503, connection); retrying later may succeed."""


class UnavailableError(TrawlError):
    """A service the request needs (object storage, a broker) cannot be reached or refuses our credentials:
    the HTTP layer answers 503 with this message, and the caller may retry."""


class NotFoundError(TrawlError):
    """Something the caller named by id does not exist (an item, a user): the HTTP layer answers 404."""

    def __init__(self, kind: str, id: str) -> None:
        super().__init__(f"no {kind} with id {id!r}")
        self.kind = kind
        self.id = id
