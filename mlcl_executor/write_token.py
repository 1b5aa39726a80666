"""Who may write to a Flow: the write token its gateway checks on every endpoint that is not a read.

With a token configured (`$MLCL_WRITE_TOKEN`, or a file named by the gateway's
`write_token_file`), a request to any endpoint but the open ones (`/search`,
`/count`, `/encode`: they read) must carry it: over HTTP as the header
`Authorization: Bearer <token>`, over gRPC as the metadata `authorization`
with the same value. Without it a write is refused before it reaches an
Executor (HTTP 401, gRPC UNAUTHENTICATED) and nothing changes. The comparison
is constant-time (`hmac.compare_digest`); the token is never logged, echoed or
put in a message. Without a token, anyone who reaches the ports may write
(`mlcl serve` says so in its ready line).

An allow-list, not a list of writes: an endpoint added later (or a spelling of
one, `index` for `/index`) needs the token until it is named open.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Iterable, Optional

TOKEN_ENV = "MLCL_WRITE_TOKEN"
#: The endpoints anyone may call: they read the index or only encode.
OPEN_ENDPOINTS = ("/search", "/count", "/encode")
#: The HTTP header / gRPC metadata key that carries the token ("Bearer <token>").
AUTHORIZATION = "authorization"


class TokenError(ValueError):
    """The configured token cannot be used (an empty variable, a missing or empty file)."""


def configured_token(token_file: Optional[str] = None) -> Optional[str]:
    """The write token: `$MLCL_WRITE_TOKEN` when set, else the first line of `token_file`, else None (writes open)."""
    value = os.environ.get(TOKEN_ENV)
    if value is not None:
        if not value.strip():
            raise TokenError(f"${TOKEN_ENV} is set but empty (unset it for open writes, or give it a token)")
        return value.strip()
    if not token_file:
        return None
    path = Path(token_file).expanduser()
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TokenError(f"write_token_file {str(path)!r} cannot be read ({exc.strerror or exc})") from None
    if not token:
        raise TokenError(f"write_token_file {str(path)!r} is empty")
    return token


def endpoint_name(endpoint: str) -> str:
    """An endpoint as the allow-list names it: one leading slash, no trailing one."""
    return "/" + str(endpoint or "").strip().strip("/")


class WriteGuard:
    """Decides whether a request may reach the Executors (see the module docstring)."""

    def __init__(self, token: Optional[str], open_endpoints: Iterable[str] = OPEN_ENDPOINTS) -> None:
        self._token = token.encode("utf-8") if token else None
        self.open_endpoints = frozenset(endpoint_name(e) for e in open_endpoints)

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def needs_token(self, endpoint: str) -> bool:
        return self.enabled and endpoint_name(endpoint) not in self.open_endpoints

    def allows(self, authorization: Optional[str]) -> bool:
        """Whether an `Authorization` value ("Bearer <token>") carries the token (constant-time comparison)."""
        if self._token is None:
            return True
        scheme, _, given = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode("utf-8"), self._token)

    def refusal(self, endpoint: str) -> str:
        """The one line a refused client reads (no token in it)."""
        return (f"{endpoint_name(endpoint)} needs the Flow's write token: send it as 'Authorization: Bearer <token>' "
                f"(gRPC metadata 'authorization'); mlcl commands read it from ${TOKEN_ENV}")


__all__ = ["AUTHORIZATION", "OPEN_ENDPOINTS", "TOKEN_ENV", "TokenError", "WriteGuard", "configured_token", "endpoint_name"]
