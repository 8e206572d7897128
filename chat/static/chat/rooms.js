// The room list: each of the user's rooms with its unread and mention badges, its notification
// level when it is not the default, and its last message, the most recently active first.
// Names and last messages come from GET /api/rooms and the live `chat-room-updated` frames;
// counts and levels come from the badge state (badges.js).

import { api } from "./http.js";

const LEVEL_NOTES = { mentions: "mentions only", none: "muted" };

export class RoomList {
  constructor({ list, empty, badges, names, onUnknownName, onOpen }) {
    this.list = list;
    this.empty = empty;
    this.badges = badges;
    this.names = names; // senderId -> username
    this.onUnknownName = onUnknownName;
    this.onOpen = onOpen;
    this.rooms = new Map(); // roomId -> {id, name, lastMessage}
    this.openRoomId = null;
  }

  async load() {
    const body = await api("GET", "/api/rooms");
    const rooms = new Map();
    for (const room of body.rooms) {
      const known = this.rooms.get(room.id);
      // Keep a newer last message a live frame brought while the request was out.
      const last = newer(known?.lastMessage, room.lastMessage);
      rooms.set(room.id, { id: room.id, name: room.name, lastMessage: last });
    }
    this.rooms = rooms;
    // Counts here carry no version (the socket's frames are the ones that say which is newer);
    // a level is not a count, and this is where a page that just loaded learns it.
    for (const room of body.rooms) this.badges.setLevel(room.id, room.level);
    this.render();
  }

  // The user left the room (here or on another device).
  remove(roomId) {
    if (!this.rooms.delete(roomId)) return;
    if (this.openRoomId === roomId) this.openRoomId = null;
    this.render();
  }

  get count() {
    return this.rooms.size;
  }

  has(roomId) {
    return this.rooms.has(roomId);
  }

  lastMessageId(roomId) {
    return this.rooms.get(roomId)?.lastMessage?.id ?? 0;
  }

  nameOf(userId) {
    const name = this.names[userId];
    if (name !== undefined) return name;
    this.onUnknownName();
    return `user ${userId}`;
  }

  name(roomId) {
    return this.rooms.get(roomId)?.name ?? `room ${roomId}`;
  }

  // A live update of the room's last message; false when the room is not in the list yet.
  setLastMessage(roomId, message) {
    const room = this.rooms.get(roomId);
    if (!room) return false;
    room.lastMessage = newer(room.lastMessage, message);
    this.render();
    return true;
  }

  setOpen(roomId) {
    this.openRoomId = roomId;
    this.render();
  }

  render() {
    const sorted = [...this.rooms.values()].sort(byLatestActivity);
    const focusedId = document.activeElement?.closest?.("#room-list button")?.dataset.roomId;
    this.list.replaceChildren(...sorted.map((room) => this.item(room)));
    this.empty.hidden = sorted.length > 0;
    if (focusedId) this.list.querySelector(`button[data-room-id="${focusedId}"]`)?.focus();
  }

  item(room) {
    const count = this.badges.roomCount(room.id);
    const mentions = this.badges.mentionCount(room.id);
    const level = this.badges.level(room.id);
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.roomId = String(room.id);
    button.dataset.level = level;
    button.setAttribute("aria-current", String(room.id === this.openRoomId));
    const name = span("name", room.name);
    const badges = span("badges", "");
    badges.setAttribute("aria-hidden", "true");
    if (level !== "all") badges.append(span("level", level === "none" ? "🔕" : "@ only"));
    // A room whose plain messages do not count in the total shows them in grey.
    if (count > 0) badges.append(span(level === "all" ? "badge" : "badge quiet", String(count)));
    if (mentions > 0) badges.append(span("badge mention", `@${mentions}`));
    button.append(name, badges);
    const last = room.lastMessage;
    const preview = last
      ? `${this.nameOf(last.senderId)}: ${last.body}`
      : "No messages yet";
    button.append(span("preview", preview));
    // One predictable name for screen readers (and tests):
    // "general, 2 unread, 1 mention, muted, bob: hi" (mentions and level only when there).
    const parts = [room.name, count > 0 ? `${count} unread` : "no unread"];
    if (mentions > 0) parts.push(mentions === 1 ? "1 mention" : `${mentions} mentions`);
    if (level !== "all") parts.push(LEVEL_NOTES[level]);
    button.setAttribute("aria-label", `${parts.join(", ")}, ${preview}`);
    button.addEventListener("click", () => this.onOpen(room.id));
    li.append(button);
    return li;
  }
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

function newer(a, b) {
  if (!a) return b ?? null;
  if (!b) return a;
  return b.id >= a.id ? b : a;
}

function byLatestActivity(a, b) {
  const aId = a.lastMessage?.id ?? 0;
  const bId = b.lastMessage?.id ?? 0;
  return bId - aId || a.name.localeCompare(b.name);
}
