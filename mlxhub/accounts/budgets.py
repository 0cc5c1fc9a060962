"""Budget usage in the database: the durable count behind the fast limit store.

A settle counts its tokens in the fast store at once (on the event loop: a dictionary, or one Redis call) and
queues the durable increment here; a background thread adds the queued tokens to ``BudgetUsage`` rows in
batches, each with one atomic ``F()`` update, so no response waits on the database and concurrent writers
(several web processes on one database) never lose an update. A process reads a scope's count from the database
the first time it needs it in a period (``limits.usage_prepare``, before the reservation); without Redis each
process also reads its scopes' counts again every ``BUDGET_REFRESH_SECONDS``, so it sees what the others
settled. What a crash loses is at most the last ``BUDGET_FLUSH_SECONDS`` of settles; a stopping process writes
what it holds before it exits.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Iterable

from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from mlxhub.accounts.constants import (
    BUDGET_FLUSH_SECONDS,
    BUDGET_REFRESH_SECONDS,
    BUDGET_WRITE_ATTEMPTS,
)
from mlxhub.accounts.models import BudgetUsage

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (scope, period)


def settled_tokens(keys: Iterable[Key]) -> dict[Key, int]:
    """The database's settled tokens for each (scope, period); 0 where no row exists yet."""
    wanted = set(keys)
    if not wanted:
        return {}
    match = Q()
    for scope, period in wanted:
        match |= Q(scope=scope, period=period)
    found = {(row.scope, row.period): row.tokens for row in BudgetUsage.objects.filter(match)}
    return {key: found.get(key, 0) for key in wanted}


def budget_usage_add(*, scope: str, period: str, tokens: int) -> int:
    """Add ``tokens`` to the scope's count in ``period`` atomically; returns the new count."""
    rows = BudgetUsage.objects.filter(scope=scope, period=period)
    with transaction.atomic():
        if not rows.update(tokens=F("tokens") + tokens, updated_at=timezone.now()):
            try:
                with transaction.atomic():
                    BudgetUsage.objects.create(scope=scope, period=period, tokens=tokens)
            except IntegrityError:  # another process made the row since the update found none
                rows.update(tokens=F("tokens") + tokens, updated_at=timezone.now())
        return int(rows.values_list("tokens", flat=True).get())


class BudgetWriter:
    """The thread that writes settled tokens to the database and, without Redis, reads the counts again."""

    def __init__(self) -> None:
        self._increments: queue.Queue[tuple[str, str, int]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._unwritten: dict[Key, int] = {}  # a batch the database refused, tried again with the next one

    def add(self, increments: list[tuple[str, str, int]]) -> None:
        self._idle.clear()
        for increment in increments:
            self._increments.put(increment)
        self.start()

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="budget-writer", daemon=True)
                    self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued increment is in the database (tests, shutdown)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        refreshed_at = time.monotonic()
        while True:
            batch = self._collect()
            if batch or self._unwritten:
                self._write(batch)
            if self._increments.empty() and not self._unwritten:
                self._idle.set()
            if time.monotonic() - refreshed_at >= BUDGET_REFRESH_SECONDS:
                refreshed_at = time.monotonic()
                self._refresh()

    def _collect(self) -> dict[Key, int]:
        """What settled in the next BUDGET_FLUSH_SECONDS (or nothing, after BUDGET_REFRESH_SECONDS)."""
        totals: dict[Key, int] = {}
        try:
            scope, period, tokens = self._increments.get(timeout=BUDGET_REFRESH_SECONDS)
        except queue.Empty:
            return totals
        totals[(scope, period)] = tokens
        deadline = time.monotonic() + BUDGET_FLUSH_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            try:
                scope, period, tokens = self._increments.get(timeout=left)
            except queue.Empty:
                break
            totals[(scope, period)] = totals.get((scope, period), 0) + tokens
        return totals

    def _write(self, batch: dict[Key, int]) -> None:
        from mlxhub.accounts.limits import limit_store

        for key, tokens in self._unwritten.items():
            batch[key] = batch.get(key, 0) + tokens
        self._unwritten = {}
        for (scope, period), tokens in batch.items():
            for attempt in range(1, BUDGET_WRITE_ATTEMPTS + 1):
                try:
                    close_old_connections()
                    total = budget_usage_add(scope=scope, period=period, tokens=tokens)
                except Exception:
                    logger.warning(
                        "budget write failed (attempt %d of %d)", attempt, BUDGET_WRITE_ATTEMPTS, exc_info=True
                    )
                    time.sleep(min(2.0, 0.1 * 2**attempt))
                    continue
                limit_store().flushed(scope, period, tokens, total)
                break
            else:  # kept for the next batch: the fast store still counts them meanwhile
                logger.error("budget usage not written yet: %s %s +%d", scope, period, tokens)
                self._unwritten[(scope, period)] = self._unwritten.get((scope, period), 0) + tokens

    def _refresh(self) -> None:
        from mlxhub.accounts.limits import limit_store

        store = limit_store()
        held = store.held()
        if not held:
            return
        try:
            close_old_connections()
            store.refresh(settled_tokens(held))
        except Exception:  # the next round tries again; meanwhile the counts stand as they were
            logger.warning("could not read budget usage again", exc_info=True)


budget_writer = BudgetWriter()


@atexit.register
def _write_before_exit() -> None:
    # A process that stops (SIGTERM, Ctrl-C) writes the settles it still holds; only a crash loses them.
    budget_writer.flush(timeout=5.0)
