"""The server's front door: limits on connections that uvicorn itself does not enforce.

uvicorn closes idle keep-alive connections, but a connection that never finishes its request headers stays open
forever, and nothing caps how many are open: 20,000 such connections exhaust the file descriptors. The protocol
class here (uvicorn's h11 protocol plus two checks) closes a connection whose first request headers have not arrived
within ``header_timeout_s`` (answering 408), and keeps at most ``max_connections`` open: a new connection beyond the
cap closes the oldest one that has not sent a request yet (408), or is refused (503) when every open connection is
serving a request. So silent connections cannot lock real clients out: they are the first to go.

    >>> uvicorn.run(app, host="127.0.0.1", port=8000, **front_options(config))   # what ``segmask serve`` does
"""

from __future__ import annotations

from typing import Any

REFUSED = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
TOO_SLOW = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type:
    """uvicorn's ``H11Protocol`` with a first-request header deadline and a cap on open connections (see the module
    docstring)."""
    from collections import deque

    from uvicorn.protocols.http.h11_impl import H11Protocol

    arrivals: deque = deque()  # connections in the order they opened; those that sent a request are skipped lazily

    class GuardedH11Protocol(H11Protocol):
        """Closes a connection without request headers after ``header_timeout_s``; refuses beyond the cap."""

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.header_deadline = None
            if len(self.connections) > max_connections and not self.evict_oldest_silent():
                transport.write(REFUSED)
                transport.close()
                return
            arrivals.append(self)
            if len(arrivals) > 2 * max_connections:  # drop the ones that sent a request or closed
                kept = [c for c in arrivals if c.waiting_for_headers()]
                arrivals.clear()
                arrivals.extend(kept)
            self.header_deadline = self.loop.call_later(header_timeout_s, self.headers_overdue)

        def evict_oldest_silent(self) -> bool:
            while arrivals:
                oldest = arrivals.popleft()
                if oldest.waiting_for_headers():
                    oldest.headers_overdue()
                    return True
            return False

        def waiting_for_headers(self) -> bool:
            return self.cycle is None and not self.transport.is_closing()

        def headers_overdue(self) -> None:
            if self.waiting_for_headers():
                self.transport.write(TOO_SLOW)
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.header_deadline is not None:
                self.header_deadline.cancel()
            super().connection_lost(exc)

    return GuardedH11Protocol


def front_options(config: Any) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that apply ``config``'s connection limits."""
    return {"http": guarded_protocol(config.header_timeout_s, config.max_connections),
            "timeout_keep_alive": config.keep_alive_s}
