"""Escalation: each ticket's next SLA event kept in SQLite, and the one task that fires it.

The policy (which warning or breach comes next, and when) is bot.services.sla's; this
module keeps `tickets.sla_due_at` current and acts when it falls due.

- `reschedule()` recomputes a ticket's next event in the transaction that changed what
  its deadlines depend on: the ticket opened, its first response was recorded, its
  status changed (resolved, closed, reopened). A priority change, made where the
  settings are not at hand, asks for it with `recheck_soon()`: the next pass does it.
- `Escalator` is one task beside the poller and the sender. Every few seconds it reads
  the tickets whose `sla_due_at` has passed (the partial index tickets_sla_due), and for
  each due event, in one transaction: stores the stage on the ticket (so it never fires
  twice, across restarts too), records a `sla_warning` or `sla_breach` event in the
  ticket's history, queues the posts, raises the priority if the config says so, and
  stores the next due instant. The metric is counted once that has committed. At start
  it recomputes every active ticket's schedule (the config may have changed).
- Posts are capped: at most ALERTS_PER_MINUTE warnings and breaches are posted a minute
  (a breach costs two of the group's 20 sends a minute, in the topic and in General);
  the others are recorded all the same, and summed up in one line in General at most
  once a minute. So a desk that turns the policy on with a backlog of overdue tickets is
  told in a few lines, not one per ticket, and the customers' words keep the budget:
  the posts queue at PRIORITY_NOTICE, behind relays in each ticket's turn.
- A breach found after its clock stopped (`late`: the answer came after the breach time
  but before a pass saw it) is recorded and counted, not posted.

The clock is injected (`Escalator(clock=...)`, from `Daemon(clock=...)`), so that tests
move time instead of waiting for it. The out-of-office note (`out_of_office()`) goes by
the ticket's receipt time, Telegram's date on the customer's first message, like the
deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from bot.config import Settings
from bot.metrics import Metrics
from bot.services import queue, sla
from bot.services.deadlines import Schedule, mention, summary_text, system_clock
from bot.services.sla import SlaEvent, Stage
from bot.services.tickets import notify_agents
from storage import agents, keys, outbox, tickets
from storage import sla as store
from storage.db import Conn, Database, to_iso
from storage.outbox import PRIORITY_CARD, PRIORITY_NOTICE, Outgoing, Purpose
from storage.tickets import Ticket

log = structlog.stdlib.get_logger(__name__)

# What the scheduler takes for now (sla.Clock, the enum, names a ticket's two clocks).
Clock = Callable[[], datetime]

POLL_INTERVAL = 5.0  # seconds between passes: an event fires at most this late
BATCH = 50  # due tickets read at once; a pass reads on until none is left
START_BATCH = 200  # tickets recomputed in one transaction at start
# The flood cap: warnings and breaches posted in any minute; the rest are summed up.
ALERTS_PER_MINUTE = 3
SUMMARY_EVERY = timedelta(minutes=1)
STOP_GRACE = 5.0
# Each clock's stage moves at most twice (warning, breach): a bound on one ticket's events.
EVENTS_A_TICKET = len(sla.Clock) * len(Stage)

CLOCK_NAMES = {sla.Clock.FIRST_RESPONSE: "first response", sla.Clock.RESOLUTION: "resolution"}


class Escalator:
    """The one task that fires SLA warnings and breaches as they fall due (see above)."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        metrics: Metrics,
        *,
        clock: Clock = system_clock,
        interval: float | None = None,
    ) -> None:
        self._db = database
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._interval = POLL_INTERVAL if interval is None else interval
        self._schedule = Schedule(settings)
        self._posted: deque[datetime] = deque()  # when the last alerts were posted
        self._unposted = {Stage.WARNING: 0, Stage.BREACH: 0}  # kept back, to sum up
        self._summed_up_at: datetime | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run in the background until stop()."""
        self._task = asyncio.create_task(self.run(), name="escalator")

    async def stop(self) -> None:
        """Finish the ticket in hand (a few seconds at most), then return."""
        self._stop.set()
        if self._task is None:
            return
        _, pending = await asyncio.wait({self._task}, timeout=STOP_GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def run(self) -> None:
        """Recompute every schedule, then a pass every few seconds until stop()."""
        try:
            await self.recompute_all()
        except Exception:
            log.exception("could not recompute the SLA schedules; the stored ones stand")
        while not self._stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("escalation pass failed; trying again next time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval)

    async def recompute_all(self) -> int:
        """Recompute the schedule of every ticket that may have one; how many."""
        if not self._schedule.enabled:
            async with self._db.transaction() as db:
                return await store.clear_all(db)
        async with self._db.reader() as db:
            found = await store.with_clocks(db)
        for start in range(0, len(found), START_BATCH):
            if self._stop.is_set():
                break
            async with self._db.transaction() as db:
                for ticket_id in found[start : start + START_BATCH]:
                    await self._schedule.store_next(db, ticket_id)
        log.info("SLA schedules recomputed", tickets=len(found))
        return len(found)

    async def tick(self) -> int:
        """One pass: fire every event due by now; return how many fired."""
        now = self._clock()
        fired = 0
        seen: set[int] = set()
        while not self._stop.is_set():
            async with self._db.reader() as db:
                due = [i for i in await store.due(db, to_iso(now), BATCH) if i not in seen]
            if not due:
                break
            for ticket_id in due:
                seen.add(ticket_id)
                try:
                    async with self._db.transaction() as db:
                        fired += await self._fire_due(db, ticket_id, now)
                except Exception:
                    # Left due: tried again next pass, without holding back the others.
                    log.exception("could not fire an SLA event", ticket_id=ticket_id)
        await self._sum_up(now)
        return fired

    async def _fire_due(self, db: Conn, ticket_id: int, now: datetime) -> int:
        """Fire the ticket's events due by `now`, then store its next due instant."""
        fired = 0
        event: SlaEvent | None = None
        for _ in range(EVENTS_A_TICKET + 1):
            found = await store.facts(db, ticket_id)
            if found is None:
                return fired
            event = self._schedule.next_event(found, now)
            if event is None or event.due_at > now:
                break
            if not await self._fire(db, ticket_id, event, now):
                break
            fired += 1
        # Facts read after the last firing: a raised priority counts from the receipt.
        await self._schedule.store_next(db, ticket_id)
        return fired

    async def _fire(self, db: Conn, ticket_id: int, event: SlaEvent, now: datetime) -> bool:
        """Record one event, queue its posts, raise the priority; False if it had fired."""
        if not await store.set_stage(db, ticket_id, event.clock.value, event.stage.value):
            return False
        ticket = await tickets.get_ticket(db, ticket_id)
        assert ticket is not None
        post = not event.late and self._may_post(now)
        detail: dict[str, object] = {
            "clock": event.clock.value,
            "deadline": to_iso(event.deadline),
            "due_at": to_iso(event.due_at),
        }
        if event.late:
            detail["late"] = True
        if not post and not event.late:
            detail["posted"] = False  # the flood cap: summed up in General
        event_id = await tickets.add_event(db, ticket_id, f"sla_{event.stage.value}", None, detail)
        if post:
            await self._post(db, ticket, event, event_id)
        elif not event.late:
            self._count_unposted(db, event.stage)
        if event.stage is Stage.BREACH and not event.late and self._settings.sla.raise_priority:
            higher = sla.raised(ticket.priority)
            if higher is not None:
                from bot.services import workflow  # noqa: PLC0415 - workflow reschedules here

                await workflow.set_priority(db, ticket, higher, None)
        self._count(db, event)
        report = log.warning if event.stage is Stage.BREACH else log.info
        report(
            f"SLA {event.stage.value}",
            ticket_id=ticket_id,
            clock=event.clock.value,
            deadline=to_iso(event.deadline),
            late=event.late,
            posted=post,
        )
        return True

    def _may_post(self, now: datetime) -> bool:
        """Whether the flood cap lets one more alert be posted now (and count it)."""
        while self._posted and now - self._posted[0] >= timedelta(minutes=1):
            self._posted.popleft()
        if len(self._posted) >= ALERTS_PER_MINUTE:
            return False
        self._posted.append(now)
        return True

    def _count_unposted(self, db: Conn, stage: Stage) -> None:
        async def count() -> None:
            self._unposted[stage] += 1

        db.after_commit(count)

    def _count(self, db: Conn, event: SlaEvent) -> None:
        counter = self._metrics.sla_events.labels(event.clock.value, event.stage.value)

        async def count() -> None:
            counter.inc()

        db.after_commit(count)

    async def _post(self, db: Conn, ticket: Ticket, event: SlaEvent, event_id: int) -> None:
        """A warning in the topic; a breach in the topic and in General, with a mention."""
        hours = self._schedule.hours
        target = self._schedule.policy.target(ticket.priority)
        length = target.of(event.clock) if target is not None else None
        aim = f" (target {sla.format_duration(length)})" if length is not None else ""
        name = CLOCK_NAMES[event.clock]
        due = hours.format(event.deadline)
        if event.stage is Stage.WARNING:
            assignee = await self._assignee(db, ticket)
            text = f"⏳ SLA warning: the {name} is due by {due}{aim}." + (
                f" {assignee}" if assignee else ""
            )
            await notify_agents(
                db,
                ticket,
                text,
                keys.sla_alert(ticket.id, event_id, "topic"),
                priority=PRIORITY_NOTICE,
            )
            return
        who = " ".join(await self._who_to_tell(db, ticket))
        text = f"🚨 SLA breach: the {name} was due by {due}{aim}."
        await notify_agents(
            db, ticket, text, keys.sla_alert(ticket.id, event_id, "topic"), priority=PRIORITY_NOTICE
        )
        await outbox.enqueue(
            db,
            Outgoing(
                key=keys.sla_alert(ticket.id, event_id, "general"),
                purpose=Purpose.NOTICE,
                method="sendMessage",
                # No thread: General. The ticket's id puts it in the ticket's turn.
                params={
                    "text": f"🚨 SLA breach in {queue.linked(ticket)}: the {name} was due "
                    f"by {due}{aim}. {who}".rstrip(),
                    "parse_mode": "HTML",
                },
                chat_id=ticket.group_chat_id,
                ticket_id=ticket.id,
                priority=PRIORITY_NOTICE,
            ),
        )

    async def _assignee(self, db: Conn, ticket: Ticket) -> str | None:
        if ticket.assignee_id is None:
            return None
        agent = await agents.get(db, ticket.assignee_id)
        return mention(ticket.assignee_id, agent.full_name if agent else "the assignee")

    async def _who_to_tell(self, db: Conn, ticket: Ticket) -> list[str]:
        """The assignee; without one, the leads on duty (sla.leads, else the admins), or
        all of them when none is on duty."""
        assignee = await self._assignee(db, ticket)
        if assignee is not None:
            return [assignee]
        leads = list(dict.fromkeys(self._settings.sla.leads or self._settings.support.admin_ids))
        on_duty = {agent.user_id: agent for agent in await agents.on_duty(db)}
        chosen = [lead for lead in leads if lead in on_duty] or leads
        role = "lead" if self._settings.sla.leads else "admin"  # for one the desk never met
        named = []
        for lead in chosen:
            agent = on_duty.get(lead) or await agents.get(db, lead)
            named.append(mention(lead, agent.full_name if agent else role))
        return named

    async def _sum_up(self, now: datetime) -> None:
        """One line in General for the alerts kept back, at most once a minute."""
        breaches, warnings = self._unposted[Stage.BREACH], self._unposted[Stage.WARNING]
        if not (breaches or warnings):
            return
        if self._summed_up_at is not None and now - self._summed_up_at < SUMMARY_EVERY:
            return
        group = self._settings.support.group_id
        async with self._db.transaction() as db:
            await outbox.enqueue(
                db,
                Outgoing(
                    key=keys.sla_summary(to_iso(now)),
                    purpose=Purpose.NOTICE,
                    method="sendMessage",
                    params={"text": summary_text(breaches, warnings), "parse_mode": "HTML"},
                    chat_id=group,
                    # After the alerts it sums up (a row of no ticket would go first).
                    priority=PRIORITY_CARD,
                ),
            )
        self._unposted[Stage.BREACH] -= breaches
        self._unposted[Stage.WARNING] -= warnings
        self._summed_up_at = now
        log.info("SLA alerts summed up", breaches=breaches, warnings=warnings)
