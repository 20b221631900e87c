"""Private chats with customers: the intake form, then their words relayed to the topic."""

from __future__ import annotations

import structlog
from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot.config import Settings
from bot.handlers.common import OnLoop, after_commit, is_service, to_incoming
from bot.services import intake, workflow
from bot.services import tickets as desk
from bot.services.agents import Actor
from bot.services.incoming import Incoming
from storage import keys
from storage.db import Conn
from storage.tickets import Answer, Status, Ticket

log = structlog.stdlib.get_logger(__name__)


class IntakeForm(StatesGroup):
    answering = State()


def create_router() -> Router:
    """The customer's side: private chats only."""
    router = Router(name="customer")
    router.message.filter(OnLoop(F.chat.type == "private"))
    router.callback_query.filter(OnLoop(F.message.chat.type == "private"))
    router.message.register(on_start, CommandStart())
    router.message.register(on_cancel, Command("cancel"))
    router.message.register(on_message)
    router.callback_query.register(on_form_button, OnLoop(F.data.startswith("form:")))
    return router


async def on_start(
    message: Message, state: FSMContext, db: Conn, settings: Settings, ticket: Ticket | None
) -> None:
    """/start: greet, or remind the customer of the ticket or question in progress."""
    incoming = to_incoming(message)
    await desk.remember_customer(db, incoming)
    key = keys.reply_to("start", incoming.chat_id, incoming.message_id)
    if ticket is not None:
        text = f"Your ticket #{ticket.id} is open: just write here and an agent will see it."
        await desk.say(db, incoming.chat_id, text, key, ticket_id=ticket.id)
        return
    form = await _form(state)
    if form is None:
        await _begin(db, state, settings, incoming, key, keep=False)
    else:
        await _ask(db, settings, incoming.chat_id, form, key)


async def on_cancel(message: Message, state: FSMContext, db: Conn, settings: Settings) -> None:
    """/cancel: leave the form."""
    incoming = to_incoming(message)
    key = keys.reply_to("cancel", incoming.chat_id, incoming.message_id)
    if await _form(state) is None:
        await desk.say(db, incoming.chat_id, settings.texts.nothing_to_cancel, key)
        return
    await state.clear()
    await desk.say(db, incoming.chat_id, settings.texts.cancelled, key)
    log.info("intake form cancelled")


async def on_message(
    message: Message, state: FSMContext, db: Conn, settings: Settings, ticket: Ticket | None
) -> None:
    """Any other message: relay it to the open ticket, or go on with the form."""
    if is_service(message):
        return
    incoming = to_incoming(message)
    await desk.remember_customer(db, incoming)
    key = keys.reply_to("msg", incoming.chat_id, incoming.message_id)
    too_large = desk.oversize_note(settings, incoming)
    if too_large:
        # Refused at the door, before it is stored or queued anywhere.
        await desk.say(db, incoming.chat_id, too_large, key)
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
    form = await _form(state)
    if form is None:
        await _begin(db, state, settings, incoming, key, keep=True)
        return
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


async def on_form_button(
    query: CallbackQuery, bot: Bot, state: FSMContext, db: Conn, settings: Settings
) -> None:
    """A choice or Skip button of the form."""
    after_commit(db, lambda: bot.answer_callback_query(query.id), "answer form button")
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


def customer_actor(incoming: Incoming) -> Actor:
    """The customer, as the author of a change in their ticket's history."""
    return Actor(
        incoming.sender_id,
        incoming.sender_name,
        incoming.sender_username,
        is_agent=False,
        is_admin=False,
    )


async def _form(state: FSMContext) -> intake.Form | None:
    if await state.get_state() != IntakeForm.answering.state:
        return None
    return intake.Form.from_data(await state.get_data())


async def _begin(
    db: Conn, state: FSMContext, settings: Settings, incoming: Incoming, key: str, *, keep: bool
) -> None:
    """Start the form; the message that started it is kept for the ticket."""
    form = intake.Form(started_at=incoming.date)
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
    await desk.open_ticket(
        db,
        settings,
        customer,
        answers=[Answer(*answer) for answer in form.answers],
        started_at=form.started_at or incoming.date,
        kept=[Incoming.from_data(data) for data in form.kept],
    )
