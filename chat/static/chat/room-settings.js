// The open room's own settings: its notification level (PUT /api/rooms/{id}/notifications:
// `all`, `mentions` or `none`, which decides what the room adds to the total and what it
// pushes) and leaving it (DELETE /api/rooms/{id}/membership).
//
// The control shows the level the badge state holds (the snapshot's, GET /api/rooms', or the
// server's answer to a change here); what a change does to the total arrives as the server's
// next versioned frame, never reckoned here.

import { api } from "./http.js";

const LEVEL_NAMES = { all: "all messages", mentions: "mentions only", none: "none (muted)" };

export class RoomSettings {
  constructor({ elements, badges, announce, onLeft }) {
    this.el = elements; // tools, level, leave
    this.badges = badges;
    this.announce = announce;
    this.onLeft = onLeft; // (roomId) after the server confirmed
    this.roomId = null;
    this.roomName = "";
    this.saving = false;
    this.el.level.addEventListener("change", () => this.setLevel(this.el.level.value));
    this.el.leave.addEventListener("click", () => this.leave());
  }

  show(roomId, roomName) {
    this.roomId = roomId;
    this.roomName = roomName;
    this.el.tools.hidden = false;
    this.el.level.setAttribute("aria-label", `Notifications for ${roomName}`);
    this.el.leave.setAttribute("aria-label", `Leave ${roomName}`);
    this.refresh();
  }

  hide() {
    this.roomId = null;
    this.el.tools.hidden = true;
  }

  // The badge state changed (a snapshot may carry a level set on another device); a choice
  // still on its way to the server is not overwritten.
  refresh() {
    if (this.roomId !== null && !this.saving) this.el.level.value = this.badges.level(this.roomId);
  }

  async setLevel(level) {
    const roomId = this.roomId;
    const name = this.roomName;
    if (roomId === null) return;
    this.saving = true;
    try {
      const answer = await api("PUT", `/api/rooms/${roomId}/notifications`, { level });
      this.badges.setLevel(answer.roomId, answer.level);
      this.announce(`Notifications for ${name}: ${LEVEL_NAMES[answer.level]}`);
    } catch (error) {
      this.announce(`Notifications for ${name} not changed: ${error.message}`);
    } finally {
      this.saving = false;
      this.refresh();
    }
  }

  async leave() {
    const roomId = this.roomId;
    const name = this.roomName;
    if (roomId === null || !window.confirm(`Leave ${name}?`)) return;
    try {
      await api("DELETE", `/api/rooms/${roomId}/membership`);
    } catch (error) {
      // Already gone (left on another device, or removed by staff): as asked.
      if (error.code !== "not_a_member") {
        this.announce(`Could not leave ${name}: ${error.message}`);
        return;
      }
    }
    this.announce(`You left ${name}`);
    this.onLeft(roomId);
  }
}
