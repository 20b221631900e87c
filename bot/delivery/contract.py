"""What the sender asks of the desk: how to aim a row, and what its outcome means.

The sender knows how to deliver a row (pacing, retries, splitting, the breaker) and
reports what happened; the desk's rules (`bot.services.outcomes`) resolve what a row
refers to and decide what success or failure means for a ticket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.delivery.breaker import Outage
from bot.delivery.errors import Failure
from storage.db import Conn
from storage.outbox import OutboxItem


class NotReadyError(Exception):
    """The row depends on something not delivered yet; try again shortly."""


class UndeliverableError(Exception):
    """The row can never be delivered as it stands; the message says why."""


class ObsoleteError(Exception):
    """The row no longer needs sending (a probe of a ticket closed meanwhile): done."""


@dataclass(frozen=True, slots=True)
class Aimed:
    """A row's request with its references resolved, ready to be shaped and sent."""

    method: str
    params: dict[str, Any]
    # For an album: the stored ids of the parts, in the order of params["message_ids"].
    parts: list[int] = field(default_factory=list)


class Desk(Protocol):
    """The desk's side of delivery."""

    async def aim(self, db: Conn, item: OutboxItem) -> Aimed:
        """Resolve what the row refers to; raise NotReadyError, UndeliverableError or
        ObsoleteError."""
        ...

    async def delivered(self, db: Conn, item: OutboxItem, aimed: Aimed, result: Any) -> None:
        """Record what a delivered row changes (the topic's id, the copy's message id)."""
        ...

    async def failed(
        self, db: Conn, item: OutboxItem, failure: Failure, why: str, attempts: int
    ) -> bool:
        """Recover from a failure that retrying did not cure; False if the row is lost
        and must become a dead letter (see `buried`)."""
        ...

    async def group_moved(self, db: Conn, old: int, new: int) -> None:
        """The group was upgraded to a supergroup with a new id: follow it."""
        ...

    async def buried(self, db: Conn, item: OutboxItem, letter_id: int, why: str) -> None:
        """Tell whoever waits for a row that became a dead letter."""
        ...

    async def outage_over(self, db: Conn, outage: Outage, trip: int) -> None:
        """Tell the admins that sending works again after an outage."""
        ...
