"""A request queue for serving: one worker thread takes up to ``max_batch_size`` waiting requests (waiting
``batch_wait_s`` for more to arrive) and runs them through the decode loop (``segmask.generation.decode``, grouped
by cached prefix): MAS prefill of the padded batch, then causal decoding, tokens reported through each
request's callback as they are produced, so the same loop serves streaming and non-streaming clients. Batching is
continuous: after each decode step finished rows leave and requests that arrived meanwhile are prefilled and join
the running batch, up to ``max_batch_size`` rows (models whose KV cache cannot be re-laid out by row, e.g.
sliding-window layers, finish their batch first; ``segmask.generation.rows``).

    >>> batcher = Batcher(model, tokenizer, mas=True)              # model: segmask.enable()d causal LM
    >>> batcher.start()
    >>> req = GenRequest(input_ids=[...], segment_ids=[...], max_new_tokens=32, on_event=print)
    >>> batcher.submit(req)                                         # on_event("token", id), then ("done", reason)
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from ..generation.decode import DecodeLoop, GenRequest

__all__ = ["Batcher", "GenRequest", "QueueFull"]


class QueueFull(Exception):
    """The server holds ``max_queue`` waiting requests already."""


class Batcher(DecodeLoop):
    """Queue of ``GenRequest``s served by one worker thread in batches (see the module docstring).

    Args:
        model, tokenizer, mas: as for ``DecodeLoop``.
        max_batch_size: most requests prefilled and decoded together.
        batch_wait_s: how long the worker waits for more requests before starting a batch.
        max_queue: waiting requests beyond this are refused with ``QueueFull``.
        prefix_cache: as for ``DecodeLoop``; requests whose leading segments (e.g. a shared system prompt) are
            stored skip their prefill.
    """

    def __init__(self, model: Any, tokenizer: Any, *, mas: bool = True, max_batch_size: int = 8,
                 batch_wait_s: float = 0.01, max_queue: int = 256, prefix_cache: Any = None):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        super().__init__(model, tokenizer, mas=mas, prefix_cache=prefix_cache)
        self.max_batch_size, self.batch_wait_s, self.max_queue = max_batch_size, batch_wait_s, max_queue
        self._queue: queue.Queue[GenRequest | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.batches_run = 0
        self.cache_stats: dict[str, int] | None = None if self.prefix_cache is None else {
            "entries": 0, "bytes": 0, "hits": 0, "misses": 0}

    def start(self) -> Batcher:
        """Start the worker thread (idempotent); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="segmask-batcher", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Finish the batch in flight, then end the worker thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def pending(self) -> int:
        """Number of requests waiting for a batch."""
        return self._queue.qsize()

    def submit(self, request: GenRequest) -> None:
        """Queue ``request``; raises ``QueueFull`` when ``max_queue`` requests are already waiting."""
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self.max_queue} requests are already waiting")
        self._queue.put(request)

    def _take(self, room: int, deadline: float | None) -> list[GenRequest]:
        """Up to ``room`` waiting requests, waiting for them until ``deadline`` (``time.monotonic()``; None: only
        those already waiting); ``stop``'s sentinel stays queued and ends the taking."""
        taken: list[GenRequest] = []
        while len(taken) < room:
            try:
                nxt = (self._queue.get_nowait() if deadline is None
                       else self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)
                break
            taken.append(nxt)
        return taken

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first, *self._take(self.max_batch_size - 1, time.monotonic() + self.batch_wait_s)]
            served = list(batch)  # every request this run takes, those admitted on the way included

            def admit(running: int, served: list[GenRequest] = served) -> list[GenRequest]:
                """Continuous batching: the waiting requests that fit beside the ``running`` rows."""
                new = self._take(self.max_batch_size - running, None)
                served.extend(new)
                return new

            try:
                self.batches_run += self.run(batch, admit=admit)
            except Exception as err:  # run isolates request failures; this is the last line of defence
                for req in served:
                    self._fail(req, err)
            if self.prefix_cache is not None:  # read by /health from another thread: a snapshot, not the cache
                cache = self.prefix_cache
                self.cache_stats = {"entries": len(cache), "bytes": cache.nbytes, "hits": cache.hits,
                                    "misses": cache.misses}
