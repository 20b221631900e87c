"""Build the Dispatcher: the one factory the daemon and the tests share."""

from __future__ import annotations

from aiogram import Dispatcher

from bot.config import Settings
from bot.handlers import admin, agents, assignment, canned, card, customer, mirror, notes
from bot.metrics import Metrics
from bot.middlewares.tickets import TicketContext
from bot.services.agents import AgentDirectory
from storage.db import Database
from storage.fsm import SQLiteStorage


def create_dispatcher(
    settings: Settings, database: Database, metrics: Metrics | None = None
) -> Dispatcher:
    """A Dispatcher with TopicDesk's routers, FSM state in SQLite, settings and metrics in
    workflow data.

    Each update runs inside its own transaction, opened by the poller (bot.ingest), which
    hands it to the handlers as `db`.
    """
    dispatcher = Dispatcher(
        storage=SQLiteStorage(database),
        settings=settings,
        metrics=metrics or Metrics(),
        directory=AgentDirectory(settings),
    )
    # Middlewares, in the order an update meets them:
    # 1. aiogram's own outer ones: errors, the user and chat context, the FSM context;
    # 2. TicketContext (inner, so it runs once the router and filters chose a handler):
    #    looks the update's ticket up once, hands it to the handler as `ticket` and binds
    #    ticket_id to the log context. It needs `db`, which the poller puts in the data.
    tickets = TicketContext()
    dispatcher.message.middleware(tickets)
    dispatcher.callback_query.middleware(tickets)
    # Admin commands and /help, first: in a private chat the customer's router takes
    # every message, and in a topic the agents' router would relay a command.
    dispatcher.include_router(admin.create_router(settings))
    dispatcher.include_router(customer.create_router())
    dispatcher.include_router(card.create_router(settings))
    dispatcher.include_router(assignment.create_router(settings))
    dispatcher.include_router(notes.create_router(settings))
    dispatcher.include_router(canned.create_router(settings))
    dispatcher.include_router(agents.create_router(settings))
    dispatcher.include_router(mirror.create_router(settings))
    dispatcher.include_router(card.create_fallback_router())
    return dispatcher
