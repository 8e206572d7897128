// The open room's own settings: leaving it (DELETE /api/rooms/{id}/membership). The contract's
// per-room notification level belongs here too once the server has it
// (docs/protocol-extensions.md).

import { api } from "./http.js";

export class RoomSettings {
  constructor({ elements, announce, onLeft }) {
    this.el = elements; // tools, leave
    this.announce = announce;
    this.onLeft = onLeft; // (roomId) after the server confirmed
    this.roomId = null;
    this.roomName = "";
    this.el.leave.addEventListener("click", () => this.leave());
  }

  show(roomId, roomName) {
    this.roomId = roomId;
    this.roomName = roomName;
    this.el.tools.hidden = false;
    this.el.leave.setAttribute("aria-label", `Leave ${roomName}`);
  }

  hide() {
    this.roomId = null;
    this.el.tools.hidden = true;
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
