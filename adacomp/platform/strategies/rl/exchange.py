"""Where the agent's episodes meet the search's trials: a small asyncio Ray actor.

An env runner finishing an episode calls `evaluate(plan)`. A plan with a known outcome (from
this search, its earlier runs, or another episode) is answered at once: the agent never pays
twice. A new plan is queued for the searcher, which hands it to Tune as a trial and reports the
outcome with `complete`; every episode waiting on that plan then gets it. `close` answers all
waiting episodes with `closed` when the search ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from adacomp.search_spaces import CompressionPlan


class PlanExchange:
    def __init__(self, known: Mapping[str, Mapping[str, Any]]) -> None:
        self._outcomes: dict[str, dict[str, Any]] = {h: dict(o) for h, o in known.items()}
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._queue: list[str] = []
        self._closed = False
        # closed: episodes answered `closed` (the search ended first); an update that learned
        # from any of them is not kept (searcher.py), one that did not is saved even at the end.
        self._stats = {"episodes": 0, "cache_hits": 0, "shared": 0, "proposed": 0, "closed": 0}

    async def evaluate(self, plan_json: str) -> dict[str, Any]:
        self._stats["episodes"] += 1
        if self._closed:
            self._stats["closed"] += 1
            return {"status": "closed"}
        key = CompressionPlan.from_json(plan_json).hash
        if key in self._outcomes:
            self._stats["cache_hits"] += 1
            return {**self._outcomes[key], "status": "cached"}
        future = self._waiting.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[key] = future
            self._queue.append(plan_json)
            self._stats["proposed"] += 1
        else:
            self._stats["shared"] += 1  # another episode is waiting on the same plan
        outcome = await asyncio.shield(future)
        if outcome.get("status") == "closed":
            self._stats["closed"] += 1  # counted before the episode hears of it
        return outcome

    def take(self, limit: int) -> list[str]:
        """New plans for the searcher to run as trials, oldest first."""
        taken, self._queue = self._queue[:limit], self._queue[limit:]
        return taken

    def complete(self, key: str, outcome: Mapping[str, Any]) -> None:
        self._outcomes[key] = dict(outcome)
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result({**outcome, "status": "evaluated"})

    def close(self) -> None:
        self._closed = True
        self._queue.clear()
        for future in self._waiting.values():
            if not future.done():
                future.set_result({"status": "closed"})
        self._waiting.clear()

    def stats(self) -> dict[str, int]:
        return {**self._stats, "known": len(self._outcomes), "waiting": len(self._waiting)}
