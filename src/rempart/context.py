"""Where a request came from: carried from the HTTP layer into services, for audit and the guard."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestContext:
    ip: str
    user_agent: str
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def local(cls, what: str) -> RequestContext:
        """For the operator's own commands run on the server (seed, import)."""
        return cls(ip="local", user_agent=f"rempart-cli/{what}")
