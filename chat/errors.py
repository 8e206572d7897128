"""Refusals that services raise and the transports (WebSocket, HTTP) turn into error replies.

Each carries the protocol's error code; the HTTP status is what an API client expects for it.
"""


class ChatError(Exception):
    code = "bad_request"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ChatError):
    pass


class NotFound(ChatError):
    code = "not_found"
    http_status = 404


class NotAMember(ChatError):
    code = "not_a_member"
    http_status = 403


class NotAllowed(ChatError):
    """A member asking for what only someone else may do (delete another's message)."""

    code = "not_allowed"
    http_status = 403


class TooLarge(ChatError):
    code = "too_large"
    http_status = 413


class RateLimited(ChatError):
    code = "rate_limited"
    http_status = 429


class InvalidCredentials(ChatError):
    code = "invalid_credentials"
    http_status = 401
