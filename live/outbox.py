"""One client's queue of encoded messages, bounded so that a slow client costs little.

Messages are JSON texts encoded once per process (see live.hub). They are queued in
chunks: a chunk is one or more message texts already joined with commas, so that a batch
the hub hands to every client costs each client one append, not one per message. The
outbox turns whatever is waiting into one WebSocket frame: the message itself when one is
waiting, else `{"type": "batch", "items": [...]}`, with `"dropped": n` when older
messages were shed because the client did not keep up.
"""

from __future__ import annotations

from collections import deque

OUTBOX_LIMIT = 5_000
"""Messages waiting per client at most; beyond it the oldest chunks are shed."""


class Outbox:
    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self._chunks: deque[tuple[str, int]] = deque()
        self._count = 0
        self.limit = limit
        self.dropped = 0
        self.dropped_total = 0

    def __len__(self) -> int:
        return self._count

    @property
    def pending(self) -> bool:
        return self._count > 0 or self.dropped > 0

    def put(self, encoded: str) -> None:
        self.put_chunk(encoded, 1)

    def put_chunk(self, joined: str, count: int) -> None:
        """`count` messages whose texts are already joined with commas."""
        if count <= 0:
            return
        self._chunks.append((joined, count))
        self._count += count
        while self._count > self.limit and len(self._chunks) > 1:
            _, shed = self._chunks.popleft()
            self._count -= shed
            self.shed(shed)

    def shed(self, count: int) -> None:
        self.dropped += count
        self.dropped_total += count

    def take_frame(self) -> str | None:
        """Everything waiting as one frame, or None when nothing is waiting."""
        if not self.pending:
            return None
        chunks, count = self._chunks, self._count
        self._chunks, self._count = deque(), 0
        dropped, self.dropped = self.dropped, 0
        if count == 1 and not dropped:
            return chunks[0][0]
        items = chunks[0][0] if len(chunks) == 1 else ",".join(text for text, _ in chunks)
        tail = f',"dropped":{dropped}}}' if dropped else "}"
        return '{"type":"batch","items":[' + items + "]" + tail
