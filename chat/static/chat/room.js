// The open room: its messages (older ones fetched on scroll through the history API, each with
// its actions: message-actions.js) and the send box.
//
// Sends are idempotent by clientMessageId: each message gets one id when it is written, kept
// in the outbox until the server's `message-sent` names it, and resent with that same id after
// every reconnect, so a send cut off by a drop is retried without ever posting twice.

import { api } from "./http.js";
import { showDeleted, showEdited } from "./message-actions.js";

const PAGE_SIZE = 30;
// After a reconnect, pages fetched back toward the last message shown before the drop; a
// longer gap restarts the view from the newest messages (older ones load on scroll).
const MAX_CATCH_UP_PAGES = 10;

export function newClientMessageId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class RoomView {
  constructor({ elements, socket, actions, names, onUnknownName, userId, announce, onLeave }) {
    this.el = elements; // heading, list, older, form, compose, composeLabel
    this.socket = socket;
    this.actions = actions; // MessageActions
    this.names = names;
    this.onUnknownName = onUnknownName;
    this.userId = userId;
    this.announce = announce;
    this.onLeave = onLeave;
    this.roomId = null;
    this.roomName = "";
    this.generation = 0; // bumps on every open, so late answers for another room are dropped
    this.hasMore = false;
    this.loadingOlder = false;
    this.outbox = new Map(); // clientMessageId -> {roomId, text}

    this.el.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendFromBox();
    });
    this.el.compose.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.sendFromBox();
      }
    });
    this.el.list.addEventListener("scroll", () => {
      if (this.el.list.scrollTop < 40) this.loadOlder();
    });
    this.el.older.addEventListener("click", () => this.loadOlder());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.roomId !== null) this.close();
    });
  }

  async open(roomId, roomName) {
    if (this.roomId === roomId) {
      this.el.compose.focus();
      return;
    }
    if (this.roomId !== null) this.socket.send({ type: "leave-room", roomId: this.roomId });
    this.roomId = roomId;
    this.roomName = roomName;
    this.generation += 1;
    this.el.heading.textContent = roomName;
    this.el.composeLabel.textContent = `Message ${roomName}`;
    this.el.form.hidden = false;
    this.el.list.replaceChildren();
    this.el.list.setAttribute("aria-label", `Messages in ${roomName}`);
    this.hasMore = false;
    this.el.older.hidden = true;
    // A closed socket joins in resync(), once it is back.
    this.socket.send({ type: "join-room", roomId });
    for (const [clientMessageId, pending] of this.outbox) {
      if (pending.roomId === roomId) this.renderPending(clientMessageId, pending.text);
    }
    this.el.compose.focus();
    await this.loadLatest();
  }

  close() {
    if (this.roomId === null) return;
    this.socket.send({ type: "leave-room", roomId: this.roomId });
    this.forget();
  }

  // Stop showing the room without telling the server (the user is no longer its member).
  forget() {
    if (this.roomId === null) return;
    this.roomId = null;
    this.generation += 1;
    this.el.heading.textContent = "Pick a room";
    this.el.form.hidden = true;
    this.el.older.hidden = true;
    this.el.list.replaceChildren();
    this.onLeave();
  }

  // After a (re)connection: view the open room again, fetch what was missed, resend the outbox.
  resync() {
    if (this.roomId !== null) {
      this.socket.send({ type: "join-room", roomId: this.roomId });
      this.loadLatest();
    }
    for (const [clientMessageId, pending] of this.outbox) {
      this.socket.send({
        type: "send-message",
        roomId: pending.roomId,
        message: pending.text,
        clientMessageId,
      });
    }
  }

  async fetchPage(before) {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (before) query.set("before", String(before));
    return api("GET", `/api/rooms/${this.roomId}/messages?${query}`);
  }

  async loadLatest() {
    const generation = this.generation;
    try {
      const shown = this.newestId();
      const atBottom = this.nearBottom();
      let page = await this.fetchPage(null);
      if (generation !== this.generation) return;
      // Missed while offline: page back until what was already shown (or give up and
      // restart the view from the newest, so no gap is ever shown between two messages).
      const missed = [...page.messages];
      let pages = 1;
      while (shown !== null && page.hasMore && oldestOf(page) > shown) {
        if (pages >= MAX_CATCH_UP_PAGES) {
          this.el.list.querySelectorAll("li[data-id]").forEach((li) => li.remove());
          break;
        }
        page = await this.fetchPage(oldestOf(page));
        if (generation !== this.generation) return;
        missed.push(...page.messages);
        pages += 1;
      }
      const first = this.oldestId() === null;
      for (const message of missed) this.insert(message);
      if (first) this.setHasMore(page.hasMore);
      if (first || atBottom) this.scrollToBottom();
    } catch (error) {
      console.warn("chat: could not load the room's messages", error);
    }
  }

  async loadOlder() {
    const oldest = this.oldestId();
    if (!this.hasMore || this.loadingOlder || oldest === null) return;
    this.loadingOlder = true;
    const generation = this.generation;
    try {
      const page = await this.fetchPage(oldest);
      if (generation !== this.generation) return;
      const list = this.el.list;
      const heightBefore = list.scrollHeight;
      for (const message of page.messages) this.insert(message);
      list.scrollTop += list.scrollHeight - heightBefore; // keep the reader's place
      this.setHasMore(page.hasMore);
    } catch (error) {
      console.warn("chat: could not load older messages", error);
    } finally {
      this.loadingOlder = false;
    }
  }

  setHasMore(hasMore) {
    this.hasMore = hasMore;
    this.el.older.hidden = !hasMore;
  }

  sendFromBox() {
    const text = this.el.compose.value.trim();
    if (!text || this.roomId === null) return;
    const clientMessageId = newClientMessageId();
    this.outbox.set(clientMessageId, { roomId: this.roomId, text });
    this.renderPending(clientMessageId, text);
    this.scrollToBottom();
    this.el.compose.value = "";
    this.socket.send({ type: "send-message", roomId: this.roomId, message: text, clientMessageId });
  }

  // --- frames -------------------------------------------------------------------------

  chatMessage(frame) {
    const message = frame.message;
    if (frame.roomId !== this.roomId || !Number.isInteger(message?.id)) return;
    const atBottom = this.nearBottom();
    this.insert(message);
    if (atBottom) this.scrollToBottom();
    if (message.senderId !== this.userId) {
      this.announce(`${this.nameOf(message.senderId)} in ${this.roomName}: ${message.body}`);
    }
  }

  // An edit, from here, another device or another member: the text as the server now has it.
  messageEdited(frame) {
    const message = frame.message;
    if (frame.roomId !== this.roomId || !Number.isInteger(message?.id)) return;
    const item = this.itemFor(message.id);
    if (item && !item.classList.contains("deleted")) showEdited(item, message);
  }

  // Another device's delete (or this page's own, arriving a second time).
  messageDeleted(frame) {
    if (frame.roomId !== this.roomId) return;
    const item = this.itemFor(frame.messageId);
    if (item && !item.classList.contains("deleted")) {
      showDeleted(item);
      this.announce(`A message in ${this.roomName} was deleted`);
    }
  }

  messageSent(frame) {
    const pending = this.outbox.get(frame.clientMessageId);
    if (!pending) return; // a repeat of one already confirmed
    this.outbox.delete(frame.clientMessageId);
    const item = this.pendingItem(frame.clientMessageId);
    if (!item) return;
    if (this.itemFor(frame.messageId)) {
      item.remove(); // its chat-message came first
      return;
    }
    item.remove();
    this.insert({
      id: frame.messageId,
      senderId: this.userId,
      body: pending.text,
      createdAt: frame.createdAt,
    });
  }

  error(frame) {
    const pending = this.outbox.get(frame.ref);
    if (pending) {
      this.outbox.delete(frame.ref);
      const item = this.pendingItem(frame.ref);
      if (item) {
        item.classList.replace("pending", "failed");
        item.querySelector(".status").textContent = ` (not sent: ${frame.message})`;
      }
      this.announce(`Your message was not sent: ${frame.message}`);
    } else if (frame.ref === "join-room") {
      this.announce(`Could not open the room: ${frame.message}`);
    }
  }

  // --- rendering ----------------------------------------------------------------------

  nameOf(userId) {
    const name = this.names[userId];
    if (name !== undefined) return name;
    this.onUnknownName();
    return `user ${userId}`;
  }

  // Names learnt since these messages were drawn (see onUnknownName).
  renameSenders() {
    for (const sender of this.el.list.querySelectorAll(".sender[data-sender-id]")) {
      const name = this.names[sender.dataset.senderId];
      if (name !== undefined) sender.textContent = name;
    }
  }

  itemFor(messageId) {
    return this.el.list.querySelector(`li[data-id="${messageId}"]`);
  }

  pendingItem(clientMessageId) {
    return [...this.el.list.querySelectorAll("li[data-client-id]")].find(
      (li) => li.dataset.clientId === clientMessageId,
    );
  }

  newestId() {
    const all = this.el.list.querySelectorAll("li[data-id]");
    return all.length ? Number(all[all.length - 1].dataset.id) : null;
  }

  oldestId() {
    const first = this.el.list.querySelector("li[data-id]");
    return first ? Number(first.dataset.id) : null;
  }

  // Messages stay in id order, each once, before the ones still being sent.
  insert(message) {
    if (!Number.isInteger(message?.id) || this.itemFor(message.id)) return;
    const item = this.messageItem(message);
    const later = [...this.el.list.querySelectorAll("li[data-id]")].find(
      (li) => Number(li.dataset.id) > message.id,
    );
    const firstPending = this.el.list.querySelector("li[data-client-id]");
    this.el.list.insertBefore(item, later ?? firstPending ?? null);
  }

  messageItem(message) {
    const li = document.createElement("li");
    li.dataset.id = String(message.id);
    const sender = document.createElement("span");
    sender.className = "sender";
    sender.dataset.senderId = String(message.senderId);
    sender.textContent = this.nameOf(message.senderId);
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = String(message.body ?? "");
    const time = document.createElement("time");
    time.dateTime = message.createdAt ?? "";
    const when = new Date(message.createdAt);
    time.textContent = Number.isNaN(when.getTime())
      ? ""
      : when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    li.append(sender, body, time);
    if (message.editedAt) showEdited(li, message);
    this.actions.attach(li, this.roomId, message);
    return li;
  }

  renderPending(clientMessageId, text) {
    const li = document.createElement("li");
    li.className = "pending";
    li.dataset.clientId = clientMessageId;
    const sender = document.createElement("span");
    sender.className = "sender";
    sender.textContent = this.nameOf(this.userId);
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = text;
    const status = document.createElement("span");
    status.className = "status";
    status.textContent = " (sending…)";
    li.append(sender, body, status);
    this.el.list.append(li);
  }

  nearBottom() {
    const list = this.el.list;
    return list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  }

  scrollToBottom() {
    this.el.list.scrollTop = this.el.list.scrollHeight;
  }
}

// The oldest id of a history page (pages are newest first).
function oldestOf(page) {
  return page.messages.length ? page.messages[page.messages.length - 1].id : 0;
}
