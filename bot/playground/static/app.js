// TopicDesk playground: polls /api/state (an ETag makes an unchanged state a bodiless 304)
// and posts the visitor's actions as JSON. Every text from the chats goes in as text nodes.
"use strict";

(() => {
  const POLL_MS = 400;
  const NAME_COLORS = ["#d45246", "#e07d2c", "#8a5ad6", "#3ca348", "#2a9ea5", "#3a86d6", "#d1509a"];
  const AVATAR_COLORS = ["#e17076", "#f29b54", "#a695e7", "#6fc465", "#55bfc4", "#65aadd", "#ee7aae"];
  const ENTITY_TAGS = { bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code", pre: "pre" };
  const LINKS = new Set(["url", "text_link", "mention", "text_mention", "email", "bot_command", "hashtag"]);

  const ui = {
    state: null,
    etag: null,
    customer: null,
    agent: null,
    topic: null,
    reply: { customer: null, agent: null },
    seenTopics: null,
    seenNotices: null,
    rendered: {},
    online: true,
  };
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- small helpers

  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  function pick(palette, id) {
    return palette[Math.abs(Number(id) || 0) % palette.length];
  }

  function initials(name) {
    const parts = String(name).trim().split(/\s+/).filter(Boolean);
    return ((parts[0] || "?")[0] + (parts.length > 1 ? parts[parts.length - 1][0] : "")).toUpperCase();
  }

  function avatar(person, extra) {
    const node = el("span", "avatar" + (extra ? " " + extra : ""), initials(person.name));
    node.style.setProperty("background", pick(AVATAR_COLORS, person.id));
    node.setAttribute("aria-hidden", "true");
    return node;
  }

  function clock(seconds) {
    if (!seconds) return "";
    const when = new Date(seconds * 1000);
    return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  }

  function firstLine(text) {
    return String(text || "").split("\n", 1)[0];
  }

  function toast(text, kind) {
    const node = el("div", "toast" + (kind ? " " + kind : ""), text);
    $("toasts").append(node);
    setTimeout(() => node.remove(), kind === "error" ? 4500 : 3000);
  }

  // Telegram's entities (UTF-16 offsets, which is how JavaScript counts) as nested elements.
  function richText(text, entities) {
    const fragment = document.createDocumentFragment();
    if (!entities || !entities.length) {
      fragment.append(text);
      return fragment;
    }
    const cuts = new Set([0, text.length]);
    for (const entity of entities) {
      cuts.add(Math.max(0, Math.min(text.length, entity.offset)));
      cuts.add(Math.max(0, Math.min(text.length, entity.offset + entity.length)));
    }
    const points = [...cuts].sort((a, b) => a - b);
    for (let i = 0; i < points.length - 1; i += 1) {
      const [start, end] = [points[i], points[i + 1]];
      let node = document.createTextNode(text.slice(start, end));
      for (const entity of entities) {
        if (entity.offset <= start && entity.offset + entity.length >= end) {
          const wrapper = el(ENTITY_TAGS[entity.type] || "span", LINKS.has(entity.type) ? "link" : "");
          if (entity.url) wrapper.title = entity.url;
          wrapper.append(node);
          node = wrapper;
        }
      }
      fragment.append(node);
    }
    return fragment;
  }

  // ---------------------------------------------------------------- talking to the server

  let timer = null;
  let polling = false;
  let pollAgain = false;

  async function poll() {
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    clearTimeout(timer);
    try {
      const query = ui.customer === null ? "" : `?customer=${ui.customer}`;
      const headers = ui.etag ? { "If-None-Match": ui.etag } : {};
      const response = await fetch(`/api/state${query}`, { cache: "no-store", headers });
      if (response.status === 200) {
        ui.etag = response.headers.get("ETag");
        ui.state = await response.json();
        render();
      }
      setOnline(response.status === 200 || response.status === 304);
    } catch (error) {
      setOnline(false);
    } finally {
      polling = false;
      timer = setTimeout(poll, pollAgain ? 0 : ui.online ? POLL_MS : 2000);
      pollAgain = false;
    }
  }

  function setOnline(online) {
    if (ui.online && !online) toast("The playground is not answering: is `topicdesk playground` still running?", "error");
    ui.online = online;
  }

  async function act(path, body) {
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    } catch (error) {
      toast("The playground is not answering.", "error");
      return null;
    }
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      toast(answer.error || `Refused (${response.status})`, "error");
      return null;
    }
    poll();
    return answer;
  }

  // ---------------------------------------------------------------- rendering

  // Re-render a part of the page only when what it shows has changed.
  function changed(part, ...inputs) {
    const key = JSON.stringify(inputs);
    if (ui.rendered[part] === key) return false;
    ui.rendered[part] = key;
    return true;
  }

  function render() {
    const state = ui.state;
    if (!state) return;
    if (ui.customer === null) ui.customer = state.customer;
    if (ui.agent === null) ui.agent = state.agents[0].id;
    chooseTopic(state);
    renderMeters(state.counters);
    renderPeople();
    renderCustomer(state);
    renderTopics(state);
    renderTopic(state);
    renderWire(state.wire);
    renderNotices(state.notices);
  }

  function topicById(state, threadId) {
    return state.topics.find((topic) => topic.thread_id === threadId) || null;
  }

  function customerTopic(state, customerId) {
    const ticket = (state.customers.find((c) => c.id === customerId) || {}).ticket;
    return state.topics.find((topic) => topic.ticket && topic.ticket.id === ticket) || null;
  }

  // Follow the conversation: a new ticket's topic is shown when the visitor is looking at
  // General or at the customer who opened it.
  function chooseTopic(state) {
    const ids = state.topics.map((topic) => topic.thread_id);
    if (ui.seenTopics === null) {
      ui.seenTopics = new Set(ids);
      const own = customerTopic(state, ui.customer);
      const tickets = state.topics.filter((topic) => !topic.general);
      ui.topic = own ? own.thread_id : tickets.length ? tickets[tickets.length - 1].thread_id : 1;
      return;
    }
    for (const topic of state.topics) {
      if (ui.seenTopics.has(topic.thread_id)) continue;
      ui.seenTopics.add(topic.thread_id);
      const mine = topic.ticket && topic.ticket.customer === ui.customer;
      if (mine || ui.topic === 1) selectTopic(topic.thread_id);
    }
    if (!ids.includes(ui.topic)) ui.topic = 1;
  }

  function selectTopic(threadId) {
    if (ui.topic !== threadId) ui.reply.agent = null;
    ui.topic = threadId;
  }

  function meter(key, label, value, mood, extra) {
    const node = el("div", "meter" + (mood ? " " + mood : ""), el("span", "meter-label", label));
    node.dataset.meter = key;
    node.append(extra || el("span", "meter-value", String(value)));
    return node;
  }

  function renderMeters(counters) {
    if (!changed("meters", counters)) return;
    const used = Math.min(counters.group_sends, counters.group_budget);
    const bar = el("span", "budget-bar" + (used >= counters.group_budget ? " full" : ""));
    for (let i = 0; i < counters.group_budget; i += 1) bar.append(el("span", i < used ? "used" : ""));
    const budget = el(
      "span",
      "budget",
      bar,
      el("span", "meter-value", `${counters.group_sends}/${counters.group_budget}`),
    );
    const window = `${Number(counters.group_window.toFixed(1))} s`;
    const meters = [
      meter("outbox_depth", "Outbox", counters.outbox_depth, counters.outbox_depth ? "busy" : ""),
      meter("group_sends", `Group budget · ${window}`, "", used >= counters.group_budget ? "busy" : "", budget),
      meter("relayed_to_agents", "Relayed → agents", counters.relayed_to_agents),
      meter("relayed_to_customers", "Relayed → customers", counters.relayed_to_customers),
      meter("too_many_requests", "429s", counters.too_many_requests, counters.too_many_requests ? "bad" : ""),
      meter("dead_letters", "Dead letters", counters.dead_letters, counters.dead_letters ? "bad" : ""),
      meter("updates_pending", "Updates waiting", counters.updates_pending, counters.updates_pending ? "busy" : ""),
    ];
    meters[0].title = "Bot API calls waiting in the desk's durable outbox";
    meters[1].title = "Sends into the agents' group in the last window: Telegram allows 20";
    meters[2].title = "Customers' messages copied into their ticket's topic";
    meters[3].title = "Agents' messages copied back to the customer";
    meters[4].title = "429 Too Many Requests answers from (the embedded) Telegram";
    meters[5].title = "Calls that could not be delivered, kept with Telegram's reason";
    meters[6].title = "Updates Telegram holds that the desk has not confirmed yet";
    $("meters").replaceChildren(...meters);
  }

  function personChip(person, selected, badge, onPick) {
    const chip = el("button", "person" + (selected ? " selected" : ""), avatar(person), person.name.split(" ")[0]);
    chip.type = "button";
    chip.dataset.id = person.id;
    chip.title = `${person.name} (@${person.username})`;
    chip.setAttribute("aria-pressed", String(selected));
    if (badge) chip.append(el("span", "person-badge", badge));
    chip.addEventListener("click", onPick);
    return chip;
  }

  function renderPeople() {
    const state = ui.state;
    if (changed("customers", state.customers, ui.customer)) {
      $("customers").replaceChildren(
        ...state.customers.map((person) =>
          personChip(person, person.id === ui.customer, person.ticket ? `#${person.ticket}` : "", () => {
            if (ui.customer === person.id) return;
            ui.customer = person.id;
            ui.reply.customer = null;
            const own = customerTopic(state, person.id);
            if (own) selectTopic(own.thread_id);
            render();
            poll();
          }),
        ),
      );
    }
    if (changed("agents", state.agents, ui.agent)) {
      $("agents").replaceChildren(
        el("span", "caption-note", "writing as"),
        ...state.agents.map((person) =>
          personChip(person, person.id === ui.agent, "", () => {
            ui.agent = person.id;
            render();
          }),
        ),
      );
    }
  }

  function keyboard(buttons, onPress) {
    if (!buttons || !buttons.length) return null;
    const node = el("div", "keyboard");
    for (const row of buttons) {
      const line = el("div", "keyboard-row");
      for (const button of row) {
        const press = el("button", "inline-button", button.text);
        press.type = "button";
        press.disabled = button.data === null;
        press.addEventListener("click", async () => {
          press.disabled = true;
          await onPress(button.data);
          press.disabled = false;
        });
        line.append(press);
      }
      node.append(line);
    }
    return node;
  }

  function quote(reply, onClick) {
    const node = el("div", "quote", el("span", "quote-name", reply.from), el("span", "quote-text", reply.text));
    if (onClick) node.addEventListener("click", onClick);
    return node;
  }

  function flash(container, messageId) {
    const row = container.querySelector(`[data-id="${messageId}"]`);
    if (!row) return;
    row.scrollIntoView({ block: "center", behavior: "smooth" });
    row.classList.add("highlight");
    setTimeout(() => row.classList.remove("highlight"), 1200);
  }

  // One message, drawn on the right in green when it is `options.me`'s. In a group, the
  // sender's name heads a run of their messages, as Telegram does.
  function messageRow(message, options, previous) {
    if (message.service) {
      const line = el("div", "service", `${message.from.name} · ${message.service}`);
      line.dataset.id = message.id;
      return line;
    }
    const out = message.from.id === options.me;
    const continued = Boolean(previous && !previous.service && previous.from.id === message.from.id);
    const bubble = el("div", "bubble");
    if (options.names && !out && !continued) {
      const name = el("div", "bubble-name", message.from.name);
      name.style.setProperty("color", message.from.bot ? "#2a7bd0" : pick(NAME_COLORS, message.from.id));
      bubble.append(name);
    }
    if (message.reply_to) bubble.append(quote(message.reply_to, () => flash(options.container, message.reply_to.id)));
    const body = el("span", "bubble-text");
    if (message.media) body.append(el("span", "bubble-media", `[${message.media}]`));
    body.append(richText(message.text, message.entities));
    bubble.append(body, el("span", "bubble-time", (message.edited ? "edited " : "") + clock(message.date)));
    const stack = el("div", "stack", bubble, keyboard(message.buttons, (data) => options.press(message, data)));
    const row = el("div", "row" + (out ? " out" : "") + (continued ? " continued" : ""), stack);
    row.dataset.id = message.id;
    if (options.reply) {
      const reply = el("button", "reply-button", "↩");
      reply.type = "button";
      reply.title = "Reply";
      reply.setAttribute("aria-label", "Reply to this message");
      reply.addEventListener("click", () => options.reply(message));
      row.append(reply);
    }
    return row;
  }

  function fillMessages(container, chatKey, nodes) {
    const fresh = container.dataset.chat !== chatKey;
    const atBottom = container.scrollHeight - container.scrollTop - container.clientHeight < 80;
    container.replaceChildren(...nodes);
    container.dataset.chat = chatKey;
    if (fresh || atBottom) container.scrollTop = container.scrollHeight;
  }

  function emptyNote(title, text) {
    return el("div", "empty", el("div", "empty-title", title), text);
  }

  function replyingBar(bar, reply, onCancel) {
    if (!reply) {
      bar.hidden = true;
      bar.replaceChildren();
      return;
    }
    const cancel = el("button", "replying-cancel", "✕");
    cancel.type = "button";
    cancel.title = "Cancel the reply";
    cancel.addEventListener("click", onCancel);
    bar.replaceChildren(quote({ from: `Reply to ${reply.from.name}`, text: firstLine(reply.text) }), cancel);
    bar.hidden = false;
  }

  function renderCustomer(state) {
    const person = state.customers.find((c) => c.id === ui.customer) || state.customers[0];
    const input = $("customer-text");
    input.placeholder = `Message as ${person.name.split(" ")[0]}`;
    const link = $("customer-ticket");
    link.hidden = !person.ticket;
    if (person.ticket) link.textContent = `Ticket #${person.ticket} is open ›`;
    replyingBar($("customer-replying"), ui.reply.customer, () => {
      ui.reply.customer = null;
      render();
    });
    if (!changed("chat", state.chat, ui.customer, ui.reply.customer && ui.reply.customer.id)) return;
    const container = $("customer-messages");
    const options = {
      me: person.id,
      names: false,
      container,
      press: (message, data) =>
        act("/api/customer/press", { customer: person.id, message_id: message.id, data }),
      reply: (message) => {
        ui.reply.customer = message;
        render();
        input.focus();
      },
    };
    const nodes = state.chat.map((message, i) => messageRow(message, options, state.chat[i - 1]));
    if (!nodes.length) {
      nodes.push(
        emptyNote(
          `Write to the bot as ${person.name}`,
          "The desk asks what it is about, then opens a topic for the agents on the right.",
        ),
      );
    }
    fillMessages(container, `customer:${person.id}`, nodes);
  }

  function topicPreview(topic) {
    const last = [...topic.messages].reverse().find((message) => !message.service);
    if (!last) return topic.general ? "the agents' own talk" : "no messages yet";
    return `${last.from.name.split(" ")[0]}: ${firstLine(last.text) || (last.media ? `[${last.media}]` : "")}`;
  }

  function renderTopics(state) {
    const ordered = [...state.topics].sort((a, b) => {
      if (a.general !== b.general) return a.general ? -1 : 1;
      if (a.closed !== b.closed) return a.closed ? 1 : -1;
      const lastA = a.messages.length ? a.messages[a.messages.length - 1].id : a.thread_id;
      const lastB = b.messages.length ? b.messages[b.messages.length - 1].id : b.thread_id;
      return lastB - lastA;
    });
    const tickets = state.topics.filter((topic) => !topic.general);
    $("group-sub").textContent = `${tickets.length} ticket topic${tickets.length === 1 ? "" : "s"} · ${state.agents.length} agents`;
    if (!changed("topics", ordered.map((t) => [t.thread_id, t.name, t.closed, topicPreview(t)]), ui.topic)) return;
    const items = ordered.map((topic) => {
      const icon = el("span", "topic-icon", topic.general ? "#" : topic.ticket ? `#${topic.ticket.id}` : initials(topic.name));
      if (!topic.general && topic.icon_color !== undefined) {
        icon.style.setProperty("background", `#${topic.icon_color.toString(16).padStart(6, "0")}`);
      }
      const meta = topic.closed ? el("span", "topic-meta", "closed") : null;
      const item = el(
        "li",
        "topic-item" + (topic.thread_id === ui.topic ? " selected" : "") + (topic.closed ? " closed" : ""),
        icon,
        el("div", "topic-body", el("div", "topic-line", el("span", "topic-name", topic.name), meta), el("div", "topic-preview", topicPreview(topic))),
      );
      item.dataset.thread = topic.thread_id;
      item.tabIndex = 0;
      item.setAttribute("role", "button");
      item.setAttribute("aria-current", String(topic.thread_id === ui.topic));
      const open = () => {
        selectTopic(topic.thread_id);
        render();
      };
      item.addEventListener("click", open);
      item.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          open();
        }
      });
      return item;
    });
    $("topic-list").replaceChildren(...items);
  }

  function renderTopic(state) {
    const topic = topicById(state, ui.topic) || state.topics[0];
    const agent = state.agents.find((a) => a.id === ui.agent) || state.agents[0];
    $("topic-title").textContent = topic.name;
    $("topic-sub").textContent = topic.general
      ? "not relayed: the agents' own talk, and the desk's notes"
      : topic.ticket
        ? `ticket #${topic.ticket.id} · ${topic.ticket.status}` +
          (topic.closed ? "" : " · what agents write here goes to the customer")
        : topic.closed
          ? "closed"
          : "a topic of no ticket: not relayed";
    const input = $("agent-text");
    const send = $("agent-form").querySelector(".send");
    input.disabled = send.disabled = topic.closed;
    input.placeholder = topic.closed
      ? "This topic is closed"
      : topic.general
        ? `Message in General as ${agent.name.split(" ")[0]} (not relayed)`
        : `Message as ${agent.name.split(" ")[0]}`;
    replyingBar($("agent-replying"), ui.reply.agent, () => {
      ui.reply.agent = null;
      render();
    });
    const container = $("topic-messages");
    const press = (message, data) => act("/api/agent/press", { agent: agent.id, message_id: message.id, data });
    renderCard(topic, container, press);
    if (!changed("topic", topic.messages, topic.thread_id, agent.id, topic.closed, ui.reply.agent && ui.reply.agent.id)) return;
    const options = {
      me: agent.id,
      names: true,
      container,
      press,
      reply: topic.closed
        ? null
        : (message) => {
            ui.reply.agent = message;
            render();
            input.focus();
          },
    };
    const nodes = topic.messages.map((message, i) => messageRow(message, options, topic.messages[i - 1]));
    if (!nodes.length) {
      const tickets = state.topics.filter((t) => !t.general).length;
      nodes.push(
        tickets
          ? emptyNote("General", "The agents' own talk: nothing written here reaches a customer.")
          : emptyNote("No tickets yet", "Write as a customer on the left: the finished form becomes a topic here."),
      );
    }
    fillMessages(container, `topic:${topic.thread_id}`, nodes);
  }

  // The card, pinned above the topic as Telegram shows a pinned message: its first line,
  // and its button when it has only one (a longer keyboard stays on the card itself).
  function renderCard(topic, container, press) {
    const bar = $("card-bar");
    if (!changed("card", topic.thread_id, topic.card)) return;
    if (!topic.card) {
      bar.hidden = true;
      bar.replaceChildren();
      return;
    }
    const card = topic.card;
    const text = el(
      "div",
      "pinned-text",
      el("div", "pinned-label", "Ticket card"),
      el("div", "pinned-line", firstLine(card.text)),
    );
    text.title = "Show the card";
    text.addEventListener("click", () => flash(container, card.id));
    bar.replaceChildren(text);
    const buttons = card.buttons.flat();
    if (buttons.length === 1) {
      bar.append(keyboard(card.buttons, (data) => press(card, data)));
    } else if (buttons.length) {
      const show = el("button", "inline-button", `${buttons.length} buttons ›`);
      show.type = "button";
      show.addEventListener("click", () => flash(container, card.id));
      bar.append(show);
    }
    bar.hidden = false;
  }

  function renderWire(wire) {
    if (!changed("wire", wire)) return;
    const calls = wire.map((call) => {
      const limited = call.status === 429;
      const failed = call.status !== 200 && !limited;
      const status = limited && call.retry_after ? `429 · retry ${call.retry_after}s` : String(call.status);
      const node = el(
        "li",
        "call" + (limited ? " limited" : failed ? " failed" : ""),
        el("span", "call-method", call.method),
        call.chat ? el("span", "call-chat", `→ ${call.chat}`) : null,
        el("span", "call-status", status),
      );
      node.title = new Date(call.at).toLocaleTimeString();
      return node;
    });
    $("wire").replaceChildren(...calls);
  }

  function renderNotices(notices) {
    if (ui.seenNotices === null) {
      ui.seenNotices = new Set(notices.map((notice) => notice.id));
      return;
    }
    for (const notice of notices) {
      if (ui.seenNotices.has(notice.id)) continue;
      ui.seenNotices.add(notice.id);
      toast(notice.text);
    }
  }

  // ---------------------------------------------------------------- the visitor's input

  $("customer-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("customer-text");
    const text = input.value;
    if (!text.trim() || ui.customer === null) return;
    const reply = ui.reply.customer;
    input.value = "";
    ui.reply.customer = null;
    const answer = await act("/api/customer/send", { customer: ui.customer, text, reply_to: reply ? reply.id : null });
    if (!answer) input.value = text;
    render();
  });

  $("agent-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("agent-text");
    const text = input.value;
    if (!text.trim() || ui.agent === null || ui.topic === null) return;
    const reply = ui.reply.agent;
    input.value = "";
    ui.reply.agent = null;
    const body = { agent: ui.agent, topic: ui.topic, text, reply_to: reply ? reply.id : null };
    const answer = await act("/api/agent/send", body);
    if (!answer) input.value = text;
    render();
  });

  $("customer-burst").addEventListener("click", async () => {
    if (ui.customer === null) return;
    const answer = await act("/api/customer/burst", { customer: ui.customer, count: 30 });
    if (answer) toast(`${answer.sent} messages sent at once: watch the outbox and the group's budget`);
  });

  $("customer-ticket").addEventListener("click", () => {
    const own = ui.state && customerTopic(ui.state, ui.customer);
    if (own) {
      selectTopic(own.thread_id);
      render();
    }
  });

  poll();
})();
