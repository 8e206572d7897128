// The room list: each of the user's rooms with its unread badge and last message, the most
// recently active first. Names and last messages come from GET /api/rooms and the live
// `chat-room-updated` frames; counts come from the badge state (badges.js).

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
    const response = await fetch("/api/rooms", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`GET /api/rooms answered ${response.status}`);
    const body = await response.json();
    const rooms = new Map();
    for (const room of body.rooms) {
      const known = this.rooms.get(room.id);
      // Keep a newer last message a live frame brought while the request was out.
      const last = newer(known?.lastMessage, room.lastMessage);
      rooms.set(room.id, { id: room.id, name: room.name, lastMessage: last });
    }
    this.rooms = rooms;
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
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.roomId = String(room.id);
    button.setAttribute("aria-current", String(room.id === this.openRoomId));
    const name = span("name", room.name);
    button.append(name);
    if (count > 0) {
      const badge = span("badge", String(count));
      badge.setAttribute("aria-hidden", "true");
      button.append(badge);
    }
    const last = room.lastMessage;
    const preview = last
      ? `${this.nameOf(last.senderId)}: ${last.body}`
      : "No messages yet";
    button.append(span("preview", preview));
    // One predictable name for screen readers (and tests): "general, 2 unread, bob: hi".
    const unread = count > 0 ? `${count} unread` : "no unread";
    button.setAttribute("aria-label", `${room.name}, ${unread}, ${preview}`);
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
