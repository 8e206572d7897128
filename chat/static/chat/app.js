// Wires the page: the socket's frames to the badge state, the room list and the open room.
// Every number shown comes from the server; this file only routes frames.

import { BadgeState, drawFavicon, titleFor } from "./badges.js";
import { api } from "./http.js";
import { MessageActions } from "./message-actions.js";
import { setUpPush } from "./push.js";
import { RoomView } from "./room.js";
import { RoomSettings } from "./room-settings.js";
import { RoomList } from "./rooms.js";
import { ChatSocket } from "./socket.js";

const config = JSON.parse(document.getElementById("page-config").textContent);
const byId = (id) => document.getElementById(id);
const announcer = byId("announcer");
const banner = byId("connection");

function announce(text) {
  // Cleared first so the same text twice is announced twice.
  announcer.textContent = "";
  setTimeout(() => {
    announcer.textContent = text;
  }, 50);
}

// Members who joined a room after the page loaded are not in config.names: the first time
// one shows up, ask the server again (at most every few seconds), then redraw the names.
const NAMES_RETRY_MS = 5000;
let namesAskedAt = -Infinity;

function unknownName() {
  if (Date.now() - namesAskedAt < NAMES_RETRY_MS) return;
  namesAskedAt = Date.now();
  api("GET", config.namesUrl)
    .then((body) => {
      Object.assign(config.names, body.names);
      rooms.render();
      room.renameSenders();
    })
    .catch((error) => console.warn("chat: could not load members' names", error));
}

const badges = new BadgeState({ onChange: showCounts });
const socket = new ChatSocket({ onFrame: handleFrame, onStatus: showStatus });
const rooms = new RoomList({
  list: byId("room-list"),
  empty: byId("no-rooms"),
  badges,
  names: config.names,
  onUnknownName: unknownName,
  onOpen: (roomId) => openRoom(roomId),
});
const settings = new RoomSettings({
  elements: { tools: byId("room-tools"), level: byId("room-level"), leave: byId("leave-room") },
  badges,
  announce,
  onLeft: (roomId) => {
    forgetRoom(roomId);
    byId("room-list").querySelector("button")?.focus();
  },
});
const actions = new MessageActions({
  socket,
  userId: config.userId,
  announce,
  // Marked unread: stop viewing the room, so its badge shows and stays.
  onMarkedUnread: (roomId) => {
    if (room.roomId === roomId) room.close();
  },
});
const room = new RoomView({
  elements: {
    heading: byId("room-heading"),
    list: byId("messages"),
    older: byId("load-older"),
    form: byId("send-form"),
    compose: byId("compose"),
    composeLabel: byId("compose-label"),
  },
  socket,
  actions,
  names: config.names,
  onUnknownName: unknownName,
  userId: config.userId,
  announce,
  onLeave: () => {
    rooms.setOpen(null);
    settings.hide();
    history.replaceState(null, "", location.pathname);
  },
});

// A room the user is no longer a member of (left here or on another device, or removed).
function forgetRoom(roomId) {
  if (room.roomId === roomId) room.forget();
  rooms.remove(roomId);
}

function loadRooms() {
  return rooms.load().then(() => {
    if (room.roomId !== null && !rooms.has(room.roomId)) forgetRoom(room.roomId);
  });
}

function showCounts() {
  document.title = titleFor(badges.total, badges.totalMentions);
  drawFavicon(badges.total);
  rooms.render();
  settings.refresh();
  if ("setAppBadge" in navigator) {
    const set = badges.total > 0 ? navigator.setAppBadge(badges.total) : navigator.clearAppBadge();
    set.catch(() => {});
  }
}

let hideBannerTimer = null;

function showStatus(status, info = {}) {
  clearTimeout(hideBannerTimer);
  if (status === "revoked") {
    // Signed out elsewhere (or by staff): the sign-in page, then back here.
    location.assign(`/login/?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  if (status === "offline") {
    banner.hidden = false;
    banner.className = "banner offline";
    const seconds = Math.max(1, Math.round(info.delay / 1000));
    banner.textContent = info.wasOnline
      ? `Offline: reconnecting in ${seconds} s…`
      : `Connecting… (retrying in ${seconds} s)`;
  } else if (status === "online") {
    room.resync();
    if (!banner.hidden) {
      banner.className = "banner online";
      banner.textContent = "Back online";
      hideBannerTimer = setTimeout(() => {
        banner.hidden = true;
      }, 4000);
    }
  }
}

async function openRoom(roomId) {
  if (!rooms.has(roomId)) return;
  rooms.setOpen(roomId);
  history.replaceState(null, "", `#room-${roomId}`);
  settings.show(roomId, rooms.name(roomId));
  await room.open(roomId, rooms.name(roomId));
}

// Rooms joined, left or written to while we were away: their names and last messages.
function listIsStale(frame) {
  return (
    frame.rooms.length !== rooms.count ||
    frame.rooms.some(
      (entry) =>
        !rooms.has(entry.roomId) || entry.lastMessageId > rooms.lastMessageId(entry.roomId),
    )
  );
}

const handlers = {
  "unread-state"(frame) {
    if (badges.applySnapshot(frame) && Array.isArray(frame.rooms) && listIsStale(frame)) {
      loadRooms().catch((error) => console.warn("chat: could not load rooms", error));
    }
  },
  "total-unread-count-updated"(frame) {
    // A level change on another device comes as this frame with the room's `level`.
    badges.applyTotal(frame);
  },
  "chat-room-updated"(frame) {
    if (!rooms.setLastMessage(frame.roomId, frame.lastMessage)) {
      loadRooms().catch((error) => console.warn("chat: could not load rooms", error));
    }
    badges.applyRoomCount(frame.roomId, frame.unreadCount, frame.version, frame.mentionCount);
    const last = frame.lastMessage;
    if (last && last.senderId !== config.userId && frame.roomId !== room.roomId) {
      const sender = rooms.nameOf(last.senderId);
      announce(`New message in ${rooms.name(frame.roomId)} from ${sender}`);
    }
  },
  "joined-room"(frame) {
    // Viewing reads the room: none of its messages is unread, so none mentions the user.
    badges.applyRoomCount(frame.roomId, frame.unreadCount, undefined, 0);
  },
  "chat-message"(frame) {
    room.chatMessage(frame);
  },
  "chat-message-edited"(frame) {
    room.messageEdited(frame);
  },
  "chat-message-deleted"(frame) {
    room.messageDeleted(frame);
  },
  "message-sent"(frame) {
    room.messageSent(frame);
  },
  error(frame) {
    console.warn("chat: the server refused a frame", frame);
    room.error(frame);
  },
  "left-room"() {},
  pong() {},
};

function handleFrame(frame) {
  const handler = Object.hasOwn(handlers, frame.type) ? handlers[frame.type] : null;
  if (handler === null) {
    console.warn("chat: ignored a frame of unknown type", frame);
    return;
  }
  handler(frame);
}

// For the browser tests and for debugging from the console: feed a raw frame to the page.
window.chatDebug = { receive: (data) => socket.receive(data), badges, socket };

window.addEventListener("online", () => socket.retryNow());

async function start() {
  try {
    await rooms.load();
  } catch (error) {
    console.warn("chat: could not load rooms", error);
  }
  socket.connect();
  const wanted = Number(location.hash.match(/^#room-(\d+)$/)?.[1]);
  if (wanted && rooms.has(wanted)) openRoom(wanted);
  window.chatDebug.push = setUpPush(byId("enable-push")).catch((error) =>
    console.warn("chat: push set-up failed", error),
  );
}

start();
