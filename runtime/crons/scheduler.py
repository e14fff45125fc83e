"""CronScheduler: fires due crons through the RunManager, like any run.

Every ``poll_s`` (1 s) it claims the due crons (``CronStore.claim_due``: the tick is consumed
and the next one stored in one transaction, so with several processes each tick fires exactly
once) and creates one run per claimed cron from its stored ``payload``:

- a thread cron: a run on its thread, with the payload's ``multitask_strategy`` (default
  ``enqueue``), so the multitask rules hold as for any client's run;
- a stateless cron: a run on a new thread, deleted when the run ends unless
  ``on_run_completed`` is ``keep``;
- the run's ``metadata`` is the payload's with the cron's ``metadata`` over it, and its
  ``config.configurable.cron_id`` is the cron's (set in the payload at create).

Ticks missed while no gateway ran fire ONCE at the next poll (coalesced, as the reference):
the next tick is computed from now, not from the missed one. A fire whose run cannot be
created (the thread was deleted, ``reject`` on a busy thread, an assistant that is gone) is
logged with the cron's id and recorded (``CronFire`` outcome ``error``), never retried: the
next tick is already stored. ``@at`` crons disable themselves when they fire.

Per-cron policies (runtime/crons/policy.py, beyond the reference): ``max_concurrency`` skips
(or queues) a tick while the cron's runs are still active, and ``retry`` fires a failed run
again after a backoff. Fires are recorded as ``created``, ``retried``, ``skipped`` or
``error`` (``CronStore.list_fires``, and the ``gateway_cron_fires_total`` metric).

Deliberate difference from the reference: its scheduler polls every 5 s; ours every second, so
seconds-level schedules (``* * * * * */5``, ``@every 2s``) keep their rhythm.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from runtime.crons.policy import CronPolicy, PolicyError, RetryPolicy, policy_of
from runtime.crons.protocol import CronStore
from runtime.crons.schedule import NoNextDate, ScheduleError, from_stored, parse, stored
from runtime.crons.types import Cron, CronFire
from runtime.errors import GatewayError, RunNotFound
from runtime.ids import now_iso
from runtime.logctx import bind
from runtime.metrics import CRON_FIRES
from runtime.runs import RunManager
from runtime.spec import RunSpec

logger = logging.getLogger(__name__)

ToSpec = Callable[[dict[str, Any], str | None], RunSpec]
"""``to_spec(payload, thread_id)``: the run a cron's payload asks for (the HTTP edge's request
model: the same validation as ``POST /threads/{id}/runs``)."""


def advance(cron: Cron, now: datetime) -> tuple[str | None, bool]:
    """The cron's next tick after ``now`` (stored text) and whether it stays enabled: an
    ``@at`` cron, a schedule that never fires again or one that cannot be read any more is
    disabled with no next tick."""
    try:
        schedule = parse(cron.schedule)
        if schedule.one_off:
            return None, False
        anchor = from_stored(cron.created_at)
        nxt = schedule.next_after(now, cron.timezone, anchor=anchor)
    except (ScheduleError, NoNextDate):
        logger.warning("cron %s: schedule %r has no next tick; disabled", cron.cron_id,
                       cron.schedule)
        return None, False
    return stored(nxt), nxt is not None


class CronScheduler:
    """Claims due crons and creates their runs. Run ``run`` in the runtime's task group.

    Args:
        store: the CronStore.
        manager: the RunManager (or ClusterRunManager) that admits the runs.
        to_spec: payload -> RunSpec (``ToSpec``).
        poll_s: seconds between two claims.
        batch: crons claimed per round at most.
    """

    def __init__(self, store: CronStore, manager: RunManager, to_spec: ToSpec, *,
                 poll_s: float = 1.0, batch: int = 100) -> None:
        self.store = store
        self.manager = manager
        self.to_spec = to_spec
        self.poll_s = poll_s
        self.batch = batch
        self._fired: dict[str, _Fired] = {}  # run_id -> a fire to retry if it fails

    async def run(self) -> None:
        """Fire due crons until cancelled; a failing round is logged and retried."""
        while True:
            try:
                while await self.tick() >= self.batch:
                    pass  # a full batch: there may be more due at once
            except Exception:
                logger.exception("cron scheduler: a round failed; retrying")
            await anyio.sleep(self.poll_s)

    async def tick(self, now: datetime | None = None) -> int:
        """One round: retries that are due, then claim what is due at ``now`` and fire it;
        how many crons were claimed."""
        if not self.manager.accepting:
            return 0
        now = now or datetime.now(UTC)
        with anyio.CancelScope(shield=True):  # a claimed tick is fired or recorded
            await self._follow_fired(now)
            claimed = await self.store.claim_due(now, self.batch, advance)
            for cron, due in claimed:
                await self._fire(cron, due)
        return len(claimed)

    async def _fire(self, cron: Cron, due: str, attempt: int = 1) -> None:
        context = contextvars.copy_context()  # cron_id on this fire's log lines only
        await context.run(asyncio.create_task, self._fire_in_context(cron, due, attempt))

    async def _fire_in_context(self, cron: Cron, due: str, attempt: int) -> None:
        bind(cron_id=cron.cron_id)
        try:
            policy = policy_of(cron.payload, cron.metadata)
        except PolicyError as exc:  # validated when written; a stored payload is trusted
            logger.warning("cron %s: ignoring its policy: %s", cron.cron_id, exc)
            policy = CronPolicy()
        if attempt == 1 and policy.max_concurrency is not None and \
                await self.store.active_runs(cron.cron_id) >= policy.max_concurrency:
            if policy.on_max_concurrency == "queue":
                await self.store.requeue_tick(cron.cron_id, due)  # due again next round
                return
            logger.info("cron %s: tick %s skipped, %d run(s) still active", cron.cron_id, due,
                        policy.max_concurrency)
            CRON_FIRES.labels("skipped").inc()
            await self.store.record_fire(CronFire(cron.cron_id, due, now_iso(), "skipped",
                                                  thread_id=cron.thread_id))
            return
        payload = dict(cron.payload)
        payload["metadata"] = {**(payload.get("metadata") or {}), **cron.metadata}
        if cron.thread_id is None:
            payload["on_completion"] = cron.on_run_completed or "delete"
        fired_at = now_iso()
        outcome = "created" if attempt == 1 else "retried"
        try:
            run = await self.manager.create(self.to_spec(payload, cron.thread_id))
        except (GatewayError, ValueError) as exc:
            logger.warning("cron %s (thread_id %s): creating its run for the tick %s failed: %s",
                           cron.cron_id, cron.thread_id, due, exc)
            CRON_FIRES.labels("error").inc()
            await self.store.record_fire(CronFire(cron.cron_id, due, fired_at, "error",
                                                  thread_id=cron.thread_id, error=str(exc)))
            return
        CRON_FIRES.labels(outcome).inc()
        logger.info("cron %s fired: run_id %s thread_id %s (tick %s, attempt %d)",
                    cron.cron_id, run.run_id, run.thread_id, due, attempt)
        await self.store.record_fire(CronFire(cron.cron_id, due, fired_at, outcome,
                                              run.run_id, run.thread_id))
        if policy.retry is not None:
            self._fired[run.run_id] = _Fired(cron, due, attempt, run.thread_id, policy.retry)

    async def _follow_fired(self, now: datetime) -> None:
        """Retry policy: look at the runs fired with a ``retry`` (this process's), and fire
        again those that failed once their delay has passed."""
        for run_id, fired in list(self._fired.items()):
            if fired.retry_at is not None:
                if now >= fired.retry_at:
                    del self._fired[run_id]
                    try:
                        cron = await self.store.get_cron(fired.cron.cron_id)
                    except GatewayError:  # deleted meanwhile: no retry
                        continue
                    await self._fire(cron, fired.tick, fired.attempt + 1)
                continue
            try:  # live state first: a stateless run is deleted with its thread at its end
                run = await self.manager.find(run_id)
            except RunNotFound:  # gone (run or thread deleted): nothing to retry
                del self._fired[run_id]
                continue
            if not run.status.is_terminal:
                continue
            if str(run.status) in fired.retry.on and fired.attempt < fired.retry.max_attempts:
                wait = fired.retry.delay_s(fired.attempt)
                logger.info("cron %s: run_id %s ended %s; retrying in %.1f s (attempt %d of %d)",
                            fired.cron.cron_id, run_id, run.status, wait, fired.attempt + 1,
                            fired.retry.max_attempts)
                fired.retry_at = now + timedelta(seconds=wait)
            else:
                del self._fired[run_id]


@dataclass
class _Fired:
    """A run a cron fired with a retry policy, followed until it ends."""

    cron: Cron
    tick: str
    attempt: int
    thread_id: str
    retry: RetryPolicy
    retry_at: datetime | None = None
