// Unread counts as the server states them, never counted up or down here.
//
// The snapshot (`unread-state`, first on every connection and possibly again at any time)
// and `total-unread-count-updated` carry a `version`: a frame whose version is not above the
// last one applied is stale and ignored. Each room has its unread count, its mention count
// (unread messages that mention the user) and its notification level (`all`, `mentions`,
// `none`); the total is the server's, which already weighs each room by its level
// (shared/PROTOCOL.md, "Badges as chat products define them"), so a level change shows here
// only when the server's next frame says what it did to the total. The total shows in the tab
// title, `(3) Chat`, with the mention total beside it when there is one, `(3 · @1) Chat`, and
// as a badge drawn on the favicon.

export const LEVELS = ["all", "mentions", "none"];

export class BadgeState {
  constructor({ onChange }) {
    this.version = -1;
    this.total = 0;
    this.totalMentions = 0;
    this.rooms = new Map(); // roomId -> {unread, mentions, level}
    this.onChange = onChange;
  }

  // Returns true when the snapshot was applied (not older than what is shown).
  applySnapshot(frame) {
    if (!Number.isInteger(frame.version) || !Number.isInteger(frame.totalUnreadCount)) {
      console.warn("chat: snapshot without a version or total, ignored", frame);
      return false;
    }
    if (frame.version < this.version) return false;
    this.version = frame.version;
    this.total = frame.totalUnreadCount;
    this.totalMentions = integerOr(frame.totalMentionCount, 0);
    const previous = this.rooms;
    this.rooms = new Map();
    for (const room of Array.isArray(frame.rooms) ? frame.rooms : []) {
      if (!Number.isInteger(room?.roomId)) continue;
      const level = LEVELS.includes(room.level)
        ? room.level
        : (previous.get(room.roomId)?.level ?? "all");
      this.rooms.set(room.roomId, {
        unread: room.unreadCount | 0,
        mentions: room.mentionCount | 0,
        level,
      });
    }
    this.onChange();
    return true;
  }

  applyTotal(frame) {
    if (!Number.isInteger(frame.version) || frame.version <= this.version) return false;
    this.version = frame.version;
    if (Number.isInteger(frame.totalUnreadCount)) this.total = frame.totalUnreadCount;
    if (Number.isInteger(frame.totalMentionCount)) this.totalMentions = frame.totalMentionCount;
    if (Number.isInteger(frame.roomId)) {
      this.setRoom(frame.roomId, frame.roomUnreadCount, frame.roomMentionCount);
      if (LEVELS.includes(frame.level)) this.room(frame.roomId).level = frame.level;
    }
    this.onChange();
    return true;
  }

  // A room's own counts (`chat-room-updated`, `joined-room`); the totals stay whatever the last
  // versioned frame said. `chat-room-updated` carries the version its counts were read at: it
  // is published from the server's lane, so it can arrive after a newer snapshot (one sent when
  // this connection opened, or again later), and older counts must not overwrite that
  // snapshot's. The same version is the same state, so it applies (the versioned total frame
  // that follows it is then still newer). A frame without a version (`joined-room`, the reply
  // on this connection) applies as it comes.
  applyRoomCount(roomId, count, version, mentions) {
    if (!Number.isInteger(roomId) || !Number.isInteger(count)) return false;
    if (Number.isInteger(version) && version < this.version) return false;
    this.setRoom(roomId, count, mentions);
    this.onChange();
    return true;
  }

  // The level the server confirmed (the answer to PUT .../notifications, or GET /api/rooms).
  setLevel(roomId, level) {
    if (!Number.isInteger(roomId) || !LEVELS.includes(level)) return;
    if (this.room(roomId).level === level) return;
    this.room(roomId).level = level;
    this.onChange();
  }

  room(roomId) {
    let room = this.rooms.get(roomId);
    if (room === undefined) {
      room = { unread: 0, mentions: 0, level: "all" };
      this.rooms.set(roomId, room);
    }
    return room;
  }

  setRoom(roomId, unread, mentions) {
    const room = this.room(roomId);
    if (Number.isInteger(unread)) room.unread = unread;
    if (Number.isInteger(mentions)) room.mentions = mentions;
    // A server that does not say (a frame from before mentions): mentions are unread messages.
    room.mentions = Math.min(room.mentions, room.unread);
  }

  roomCount(roomId) {
    return this.rooms.get(roomId)?.unread ?? 0;
  }

  mentionCount(roomId) {
    return this.rooms.get(roomId)?.mentions ?? 0;
  }

  level(roomId) {
    return this.rooms.get(roomId)?.level ?? "all";
  }
}

function integerOr(value, fallback) {
  return Number.isInteger(value) ? value : fallback;
}

export function titleFor(total, mentions = 0) {
  if (total <= 0) return "Chat";
  return mentions > 0 ? `(${total} · @${mentions}) Chat` : `(${total}) Chat`;
}

const ICON_SIZE = 64;

// The favicon with the total on a red disc; the plain icon when the total is 0.
export function drawFavicon(total, link = document.querySelector('link[rel="icon"]')) {
  if (!link) return;
  if (!link.dataset.plain) link.dataset.plain = link.href;
  if (total <= 0) {
    link.href = link.dataset.plain;
    link.dataset.count = "0";
    return;
  }
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = ICON_SIZE;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#1f6feb";
  ctx.beginPath();
  ctx.roundRect(2, 8, 60, 40, 6);
  ctx.fill();
  ctx.fillStyle = "#cf222e";
  ctx.beginPath();
  ctx.arc(42, 22, 22, 0, 2 * Math.PI);
  ctx.fill();
  ctx.fillStyle = "#fff";
  ctx.font = "bold 26px sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(total > 99 ? "99+" : String(total), 42, 23, 40);
  link.href = canvas.toDataURL("image/png");
  link.dataset.count = String(total);
}
