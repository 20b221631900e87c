"""Private chats with customers: the intake form, their words relayed to the topic, their
commands (/new, /status, /close), and the rating of a finished ticket."""

from __future__ import annotations

import structlog
from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot.config import Settings
from bot.handlers.common import OnLoop, after_commit, is_service, to_incoming
from bot.metrics import Metrics
from bot.services import admin, csat, customers, intake, opening, workflow
from bot.services import tickets as desk
from bot.services.agents import Actor
from bot.services.incoming import Incoming
from bot.services.tickets import render
from storage import bans, keys
from storage.db import Conn, utcnow
from storage.tickets import Answer, Status, Ticket

log = structlog.stdlib.get_logger(__name__)


class IntakeForm(StatesGroup):
    answering = State()


class RatingComment(StatesGroup):
    """A rating was just given: the customer's next text may be its comment."""

    writing = State()


def create_router() -> Router:
    """The customer's side: private chats only."""
    router = Router(name="customer")
    router.message.filter(OnLoop(F.chat.type == "private"))
    router.callback_query.filter(OnLoop(F.message.chat.type == "private"))
    router.message.register(on_start, CommandStart())
    router.message.register(on_cancel, Command("cancel"))
    router.message.register(on_new, Command("new"))
    router.message.register(on_status, Command("status"))
    router.message.register(on_close, Command("close"))
    router.message.register(on_message)
    router.callback_query.register(on_form_button, OnLoop(F.data.startswith("form:")))
    router.callback_query.register(on_rating_button, OnLoop(F.data.startswith("rate:")))
    return router


async def on_start(
    message: Message, state: FSMContext, db: Conn, settings: Settings, ticket: Ticket | None
) -> None:
    """/start: greet, or remind the customer of the ticket or question in progress."""
    incoming = to_incoming(message)
    await desk.remember_customer(db, incoming)
    key = keys.reply_to("start", incoming.chat_id, incoming.message_id)
    await _drop_comment(state)
    form = await _form(state)
    if form is not None:
        await _ask(db, settings, incoming.chat_id, form, key)
    elif ticket is not None:
        text = f"Your ticket #{ticket.id} is open: just write here and an agent will see it."
        await desk.say(db, incoming.chat_id, text, key, ticket_id=ticket.id)
    else:
        await _begin(db, state, settings, incoming, key, keep=False)


async def on_cancel(message: Message, state: FSMContext, db: Conn, settings: Settings) -> None:
    """/cancel: leave the form."""
    incoming = to_incoming(message)
    key = keys.reply_to("cancel", incoming.chat_id, incoming.message_id)
    if await _drop_comment(state):
        await desk.say(db, incoming.chat_id, settings.texts.csat_thanks, key)
        return
    if await _form(state) is None:
        await desk.say(db, incoming.chat_id, settings.texts.nothing_to_cancel, key)
        return
    await state.clear()
    await desk.say(db, incoming.chat_id, settings.texts.cancelled, key)
    log.info("intake form cancelled")


async def on_message(
    message: Message,
    state: FSMContext,
    db: Conn,
    settings: Settings,
    metrics: Metrics,
    ticket: Ticket | None,
) -> None:
    """Any other message: a rating's comment, an answer to the form, words for the open
    ticket, or, with no ticket open, a new ticket (or the last one reopened)."""
    if is_service(message):
        return
    incoming = to_incoming(message)
    await desk.remember_customer(db, incoming)
    if await admin.turned_away(db, settings, incoming):
        return  # banned: kept, never relayed, told once
    key = keys.reply_to("msg", incoming.chat_id, incoming.message_id)
    too_large = desk.oversize_note(settings, incoming)
    if too_large:
        # Refused at the door, before it is stored or queued anywhere.
        await desk.say(db, incoming.chat_id, too_large, key)
        return
    if await _took_comment(db, state, settings, incoming, ticket, key):
        return
    form = await _form(state)
    if form is not None:
        await _go_on_with_form(db, state, settings, incoming, form, key)
        return
    if ticket is not None:
        if incoming.relayable:
            await desk.relay(db, settings, ticket, incoming, "to_agents")
            if ticket.status in {Status.PENDING, Status.RESOLVED}:
                # The customer answered, or is not satisfied: the desk owes a reply again.
                await workflow.change_status(
                    db, settings, ticket, Status.OPEN, customer_actor(incoming)
                )
        else:
            await desk.say(
                db, incoming.chat_id, settings.texts.unsupported, key, ticket_id=ticket.id
            )
        return
    if settings.tickets.after_closed == "reopen" and incoming.relayable:
        reopened = await customers.reopen_recent(db, settings, customer_actor(incoming), metrics)
        if reopened is not None:
            await desk.relay(db, settings, reopened, incoming, "to_agents")
            text = render(settings.texts.ticket_reopened, ticket=reopened.id)
            await desk.say(db, incoming.chat_id, text, key, ticket_id=reopened.id)
            return
    await _begin(db, state, settings, incoming, key, keep=True)


async def _go_on_with_form(
    db: Conn,
    state: FSMContext,
    settings: Settings,
    incoming: Incoming,
    form: intake.Form,
    key: str,
) -> None:
    """A message while the form is open: the answer to its question, or kept for later."""
    question = settings.intake.questions[form.step]
    answer_text = incoming.text if question.kind != "choice" or incoming.kind == "text" else None
    if incoming.kind != "text":
        if not incoming.relayable:
            await _ask(db, settings, incoming.chat_id, form, key, settings.texts.unsupported)
            return
        form.kept.append(incoming.to_data())
        if not answer_text:
            await state.update_data(form.to_data())
            reason = "Thank you, we'll pass that on with your ticket."
            await _ask(db, settings, incoming.chat_id, form, key, reason)
            return
    value, reason = intake.check_answer(question, answer_text)
    if value is None:
        await state.update_data(form.to_data())
        await _ask(db, settings, incoming.chat_id, form, key, reason)
        return
    await _answered(db, state, settings, incoming, form, value, key)


async def on_new(
    message: Message,
    state: FSMContext,
    db: Conn,
    settings: Settings,
    metrics: Metrics,
    ticket: Ticket | None,
) -> None:
    """/new: start a new ticket. The active one is closed first, or kept beside it
    (`tickets.new_closes_current`); the new ticket is where later words go."""
    incoming = to_incoming(message)
    await desk.remember_customer(db, incoming)
    key = keys.reply_to("new", incoming.chat_id, incoming.message_id)
    await _drop_comment(state)
    restarted = await _form(state)
    if ticket is not None:
        if settings.tickets.new_closes_current:
            actor = customer_actor(incoming)
            await customers.close_by_customer(
                db, settings, ticket, actor, metrics, starting_over=True
            )
            template = settings.texts.new_closes_current
        else:
            template = settings.texts.new_keeps_current
        text = render(template, ticket=ticket.id)
        await desk.say(db, incoming.chat_id, text, keys.part(key, "current"), ticket_id=ticket.id)
    await _begin(db, state, settings, incoming, key, keep=False, restarted=restarted)


async def on_status(message: Message, state: FSMContext, db: Conn, settings: Settings) -> None:
    """/status: the customer's own tickets and where each stands."""
    incoming = to_incoming(message)
    await desk.remember_customer(db, incoming)
    await _drop_comment(state)
    text = await customers.status_text(db, settings, incoming.sender_id)
    key = keys.reply_to("status", incoming.chat_id, incoming.message_id)
    await desk.say(db, incoming.chat_id, text, key)


async def on_close(
    message: Message,
    state: FSMContext,
    db: Conn,
    settings: Settings,
    metrics: Metrics,
    ticket: Ticket | None,
) -> None:
    """/close: the customer closes their active ticket (the one their words go to)."""
    incoming = to_incoming(message)
    await desk.remember_customer(db, incoming)
    await _drop_comment(state)
    if ticket is None:
        key = keys.reply_to("close", incoming.chat_id, incoming.message_id)
        await desk.say(db, incoming.chat_id, settings.texts.nothing_to_close, key)
        return
    await customers.close_by_customer(db, settings, ticket, customer_actor(incoming), metrics)


async def on_form_button(
    query: CallbackQuery, bot: Bot, state: FSMContext, db: Conn, settings: Settings
) -> None:
    """A choice or Skip button of the form."""
    after_commit(db, lambda: bot.answer_callback_query(query.id), "answer form button")
    if await bans.get(db, query.from_user.id) is not None:
        return  # banned during the form: it goes no further
    parsed = intake.parse_callback(query.data or "")
    form = await _form(state)
    if parsed is None or form is None or parsed[0] != form.step:
        log.info("stale form button ignored", data=query.data)
        return
    question = settings.intake.questions[form.step]
    value = intake.check_choice(question, parsed[1])
    if value is None:
        return
    user = query.from_user
    person = Incoming(
        chat_id=user.id,
        message_id=0,
        sender_id=user.id,
        sender_name=user.full_name,
        sender_username=user.username,
        language_code=user.language_code,
        kind="button",
        text=value,
        date=form.started_at,
    )
    await desk.remember_customer(db, person)
    await _answered(db, state, settings, person, form, value, keys.button(user.id, query.id))


async def on_rating_button(
    query: CallbackQuery, bot: Bot, state: FSMContext, db: Conn, settings: Settings
) -> None:
    """A rating (1-5) or the comment's Skip: honoured for the presser's own finished
    ticket only; anything else changes nothing, is answered and logged."""
    presser = query.from_user
    prompt_id = query.message.message_id if query.message is not None else None
    skip_for = csat.skip_of(query.data or "")
    if skip_for is not None:
        if prompt_id is not None and await _comment_for(state) == skip_for:
            await state.clear()
            await csat.skipped(db, settings, skip_for, query.id, prompt_id)
        after_commit(db, lambda: bot.answer_callback_query(query.id), "answer skip")
        return
    found = await csat.rateable(db, presser.id, query.data or "")
    if isinstance(found, csat.Refusal):
        log.warning("rating refused", reason=found.reason, data=query.data, presser_id=presser.id)
        text = settings.texts.csat_refused
        after_commit(db, lambda: bot.answer_callback_query(query.id, text=text), "answer rating")
        return
    after_commit(db, lambda: bot.answer_callback_query(query.id), "answer rating")
    ticket = found.ticket
    if not await csat.rate(db, settings, ticket, found.score, query.id, prompt_id):
        return  # the same score again: nothing changes twice
    await workflow.show(db, ticket, keys.csat(ticket.id, query.id, "view"))
    if settings.tickets.csat_comment and await _form(state) is None:
        # A form in progress keeps its state; the comment is then not asked for.
        await state.set_state(RatingComment.writing)
        await state.set_data({"ticket": ticket.id, "asked_at": utcnow()})
        await csat.ask_comment(db, settings, ticket, query.id)


def customer_actor(incoming: Incoming) -> Actor:
    """The customer, as the author of a change in their ticket's history."""
    return Actor(
        incoming.sender_id,
        incoming.sender_name,
        incoming.sender_username,
        is_agent=False,
        is_admin=False,
    )


async def _comment_for(state: FSMContext) -> int | None:
    """The ticket whose rating the customer may comment on now, if any."""
    if await state.get_state() != RatingComment.writing.state:
        return None
    return int((await state.get_data()).get("ticket", 0)) or None


async def _drop_comment(state: FSMContext) -> bool:
    """The customer moved on: a comment is no longer expected. False if none was."""
    if await _comment_for(state) is None:
        return False
    await state.clear()
    return True


async def _took_comment(
    db: Conn,
    state: FSMContext,
    settings: Settings,
    incoming: Incoming,
    ticket: Ticket | None,
    key: str,
) -> bool:
    """Take the message as the comment on a rating just given, if it clearly is one
    (csat.is_comment); otherwise the comment is no longer expected and the message goes
    the usual way."""
    rated_id = await _comment_for(state)
    if rated_id is None:
        return False
    asked_at = str((await state.get_data()).get("asked_at", ""))
    await state.clear()
    if not asked_at or not await csat.is_comment(db, rated_id, asked_at, incoming, ticket):
        return False
    rated = await csat.take_comment(db, settings, rated_id, incoming, key)
    if rated is None:
        return False
    await workflow.show(db, rated, keys.part(key, "view"))
    return True


async def _form(state: FSMContext) -> intake.Form | None:
    if await state.get_state() != IntakeForm.answering.state:
        return None
    return intake.Form.from_data(await state.get_data())


async def _begin(
    db: Conn,
    state: FSMContext,
    settings: Settings,
    incoming: Incoming,
    key: str,
    *,
    keep: bool,
    restarted: intake.Form | None = None,
) -> None:
    """Start the form; the message that started it is kept for the ticket. A form
    `restarted` (/new) hands on what the customer sent meanwhile, and its clock."""
    if await admin.turned_away(db, settings, incoming):
        return  # a banned customer starts no form
    form = intake.Form(started_at=incoming.date)
    if restarted is not None:
        form.kept = restarted.kept
        form.started_at = restarted.started_at or incoming.date
    if keep and incoming.relayable:
        form.kept.append(incoming.to_data())
    await state.set_state(IntakeForm.answering)
    await state.set_data(form.to_data())
    await desk.say(db, incoming.chat_id, settings.texts.greeting, keys.part(key, "greeting"))
    await _ask(db, settings, incoming.chat_id, form, key)
    log.info("intake form started")


async def _ask(
    db: Conn, settings: Settings, chat_id: int, form: intake.Form, key: str, reason: str = ""
) -> None:
    question = settings.intake.questions[form.step]
    prompt = intake.prompt_for(question, form.step, settings.texts.skip_button, reason)
    await desk.say(
        db, chat_id, prompt.text, keys.part(key, f"ask:{form.step}"), buttons=prompt.buttons
    )


async def _answered(
    db: Conn,
    state: FSMContext,
    settings: Settings,
    incoming: Incoming,
    form: intake.Form,
    value: str,
    key: str,
) -> None:
    """Store an accepted answer; ask the next question or open the ticket."""
    question = settings.intake.questions[form.step]
    form.answers.append([question.id, question.title, value])
    form.step += 1
    if form.step < len(settings.intake.questions):
        await state.update_data(form.to_data())
        await _ask(db, settings, incoming.chat_id, form, key)
        return
    await state.clear()
    customer = await desk.find_customer(db, incoming.sender_id)
    assert customer is not None
    await opening.open_ticket(
        db,
        settings,
        customer,
        answers=[Answer(*answer) for answer in form.answers],
        started_at=form.started_at or incoming.date,
        kept=[Incoming.from_data(data) for data in form.kept],
        previous_ticket_id=await customers.follows(db, customer.user_id),
    )
