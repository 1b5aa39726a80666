"""Errors a client caused (a bad parameter, a wrong type), as opposed to a server fault; how errors name a document.

An Executor raises `RequestError` for a request it will not serve as sent. The
worker answers it with the request's error status and a one-line log entry (no
traceback: it is not our bug), and `MLCLGateway` turns it into HTTP 400 with the
reason; gRPC clients get the request's error status with the same reason
(`mlcl_executor/jina_patches/`).
"""

from typing import Any

#: How the reason is recognised in a gateway: the status description is `repr(exc)`.
REQUEST_ERROR_NAME = "RequestError"


class RequestError(ValueError):
    """A client's mistake: the request cannot be served as sent (the message says why)."""


def doc_name(doc_id: Any, position: int) -> str:
    """How errors name a document: its id, or its position when a client sent none (HTTP)."""
    return f"document {doc_id!r}" if doc_id else f"document #{position} (no id)"


__all__ = ["REQUEST_ERROR_NAME", "RequestError", "doc_name"]
