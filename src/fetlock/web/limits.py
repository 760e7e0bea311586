"""A size limit on request bodies, except DICOM uploads.

Starlette and FastAPI read a whole request body into memory before a route
can reject it, whatever its media type, so without a limit a client could
make the server hold hundreds of megabytes for one request. Fetlock's pages
and JSON API take small bodies: a report with its findings is tens of
kilobytes. STOW-RS (``POST /dicomweb/studies``) is the one route that takes
large bodies, and it streams them to disk, so it is not limited here.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 2 * 1024 * 1024

# STOW-RS, the only route that takes large bodies.
STOW_PATH = "/dicomweb/studies"


def _is_limited(path: str) -> bool:
    return not (path == STOW_PATH or path.startswith(STOW_PATH + "/"))


class BodySizeLimit:
    """Reject request bodies over ``max_bytes`` with 413, before parsing.

    A body that declares its length is rejected without being read. A body
    sent in chunks without a length is buffered up to the limit and then
    passed on, so the application never receives more than ``max_bytes``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not _is_limited(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)

        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send, int(declared))
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._reject(send, size, complete=False)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks)}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Send, size: int, *, complete: bool = True) -> None:
        counted = f"{size} bytes" if complete else f"more than {self.max_bytes} bytes"
        body = json.dumps(
            {
                "detail": (
                    f"request body too large: {counted}, the limit is "
                    f"{self.max_bytes} bytes except for DICOM uploads to "
                    f"{STOW_PATH}; send less data per request (split the change "
                    "into several requests)"
                )
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
