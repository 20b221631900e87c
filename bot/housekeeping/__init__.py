"""Housekeeping: true gauges, a short ledger, admins told of trouble, a consistent store.

`Housekeeper` runs two loops. Every `health.housekeeping_interval` seconds it refreshes
the gauges that describe the store and prunes the processed-update ledger (`gauges`),
and alerts the admins when operations fail too often or updates pile up at Telegram
(`alerts`, the escalation criteria of the error-handling guide). Every
`health.reconcile_interval` seconds (and once at start) it reconciles what the store
believes with what happened (`reconcile`).
"""

from bot.housekeeping.keeper import Housekeeper
from bot.housekeeping.reconcile import EXCERPT, PROBES_PER_PASS, undelivered_note

__all__ = ["EXCERPT", "PROBES_PER_PASS", "Housekeeper", "undelivered_note"]
