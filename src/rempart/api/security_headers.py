"""Headers on every response: patient data is never cached, sniffed, framed or referred."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]


class SecurityHeaders:
    """Pure ASGI (not BaseHTTPMiddleware), so it costs a list append per response."""

    def __init__(self, app: ASGIApp, *, docs_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The OpenAPI page loads scripts and styles; everything else gets the strict policy.
        strict = not str(scope.get("path", "")).startswith(self.docs_paths)

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(h for h in _HEADERS if strict or h[0] != b"content-security-policy")
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, add_headers)
