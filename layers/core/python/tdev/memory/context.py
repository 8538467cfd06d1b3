"""The per-session context manager: up to 10,000 entries, top-k by relevance = recency + similarity.

relevance(entry, query) = SIMILARITY_WEIGHT * cosine(query, entry) + RECENCY_WEIGHT * 0.5 ** (age / half-life)

`compress()` merges near-duplicates (cosine >= 0.95: the newer text stays, the importance is the
larger, the merge is counted) and drops entries that are both stale (older than `stale_after`) and of
low importance; at the entry limit the least relevant-by-default entries are dropped first.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tdev.memory.arrays import np
from tdev.memory.embeddings import Embedder, default_embedder

MAX_ENTRIES = 10_000
SIMILARITY_WEIGHT = 0.8
RECENCY_WEIGHT = 0.2
HALF_LIFE_SECONDS = 3_600.0
DUPLICATE_SIMILARITY = 0.95
STALE_AFTER_SECONDS = 4 * 3_600.0
LOW_IMPORTANCE = 0.2


@dataclass
class ContextEntry:
    text: str
    created_at: float
    importance: float = 0.5
    kind: str = "note"
    entry_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    merged: int = 0


@dataclass
class Scored:
    entry: ContextEntry
    relevance: float
    similarity: float
    recency: float


class ContextManager:
    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        max_entries: int = MAX_ENTRIES,
        half_life_seconds: float = HALF_LIFE_SECONDS,
    ) -> None:
        self.embedder = embedder or default_embedder()
        self.max_entries = max_entries
        self.half_life_seconds = half_life_seconds
        self.entries: list[ContextEntry] = []
        self._vectors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def vectors(self) -> np.ndarray:
        if self._vectors is None or len(self._vectors) != len(self.entries):
            self._vectors = self.embedder.embed([e.text for e in self.entries])
        return self._vectors

    def add(
        self, text: str, *, importance: float = 0.5, kind: str = "note", now: float | None = None
    ) -> ContextEntry:
        return self.add_many([text], importance=importance, kind=kind, now=now)[0]

    def add_many(
        self, texts: list[str], *, importance: float = 0.5, kind: str = "note", now: float | None = None
    ) -> list[ContextEntry]:
        now = time.time() if now is None else now
        vectors = self.vectors
        new = [ContextEntry(text=t, created_at=now, importance=importance, kind=kind) for t in texts]
        self.entries += new
        self._vectors = (
            np.vstack([vectors, self.embedder.embed(texts)]) if len(vectors) else self.embedder.embed(texts)
        )
        if len(self.entries) > self.max_entries:
            self._drop_least(len(self.entries) - self.max_entries, now)
        return new

    def _recency(self, now: float) -> np.ndarray:
        ages = np.array([max(now - e.created_at, 0.0) for e in self.entries], dtype=np.float64)
        return np.power(0.5, ages / self.half_life_seconds)

    def _drop_least(self, count: int, now: float) -> None:
        importance = np.array([e.importance for e in self.entries])
        order = np.argsort(importance + self._recency(now), kind="stable")
        drop = set(order[:count].tolist())
        self._keep([i for i in range(len(self.entries)) if i not in drop])

    def _keep(self, indexes: list[int]) -> None:
        vectors = self.vectors
        self.entries = [self.entries[i] for i in indexes]
        self._vectors = vectors[indexes] if indexes else None

    def top_k(self, query: str, k: int = 10, *, now: float | None = None) -> list[Scored]:
        if not self.entries:
            return []
        now = time.time() if now is None else now
        similarity = self.vectors @ self.embedder.embed([query])[0]
        recency = self._recency(now)
        relevance = SIMILARITY_WEIGHT * similarity + RECENCY_WEIGHT * recency
        best = np.argsort(-relevance, kind="stable")[:k]
        return [
            Scored(self.entries[i], float(relevance[i]), float(similarity[i]), float(recency[i]))
            for i in best
        ]

    def compress(
        self, *, now: float | None = None, stale_after: float = STALE_AFTER_SECONDS
    ) -> dict[str, int]:
        """Merge near-duplicates, drop stale low-importance entries; returns the counts."""
        now = time.time() if now is None else now
        vectors = self.vectors
        keep: list[int] = []
        merged = dropped = 0
        for index in sorted(range(len(self.entries)), key=lambda i: -self.entries[i].created_at):
            entry = self.entries[index]
            if now - entry.created_at > stale_after and entry.importance < LOW_IMPORTANCE:
                dropped += 1
                continue
            if keep:
                similarities = vectors[keep] @ vectors[index]
                best = int(np.argmax(similarities))
                if similarities[best] >= DUPLICATE_SIMILARITY:
                    survivor = self.entries[keep[best]]  # the newer one
                    survivor.importance = max(survivor.importance, entry.importance)
                    survivor.merged += 1 + entry.merged
                    merged += 1
                    continue
            keep.append(index)
        self._keep(sorted(keep))
        return {"merged": merged, "dropped": dropped, "entries": len(self.entries)}

    def snapshot(self) -> list[dict[str, Any]]:
        return [vars(e).copy() for e in self.entries]

    def restore(self, entries: list[dict[str, Any]]) -> None:
        self.entries = [ContextEntry(**e) for e in entries]
        self._vectors = None
