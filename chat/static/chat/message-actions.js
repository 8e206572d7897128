// What a member can do to one message of the open room: delete their own (the HTTP API), and
// mark any message as unread from there on. Each message's buttons sit in its list item; how a
// delete looks is drawn here too, the same whether this page made it or another device did
// (`chat-message-deleted`).
//
// Nothing here counts: what a delete or a mark-unread does to the badges arrives as the
// server's versioned frames (badges.js).

import { api } from "./http.js";

export class MessageActions {
  // onMarkedUnread(roomId) runs before the frame goes out: the room must stop being viewed, or
  // the server would count the messages as read again as soon as the next one arrives.
  constructor({ socket, userId, announce, onMarkedUnread }) {
    this.socket = socket;
    this.userId = userId;
    this.announce = announce;
    this.onMarkedUnread = onMarkedUnread;
  }

  // The buttons of one saved message, for the list item `li` of the room `roomId`.
  attach(li, roomId, message) {
    const group = document.createElement("span");
    group.className = "actions";
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", "Message actions");
    if (message.senderId === this.userId) {
      group.append(button("Delete", () => this.remove(li, roomId, message.id)));
    }
    group.append(button("Mark unread", () => this.markUnread(roomId, message.id)));
    li.append(group);
  }

  async remove(li, roomId, messageId) {
    if (!window.confirm("Delete this message for everyone?")) return;
    try {
      await api("DELETE", `/api/rooms/${roomId}/messages/${messageId}`);
    } catch (error) {
      // Already deleted (on another device): it is gone, as asked.
      if (error.code !== "not_found") {
        this.announce(`Your message was not deleted: ${error.message}`);
        return;
      }
    }
    showDeleted(li);
    this.announce("Message deleted");
  }

  markUnread(roomId, messageId) {
    this.onMarkedUnread(roomId);
    const frame = { type: "mark-unread", roomId, messageId };
    if (!this.socket.send(frame)) {
      api("POST", `/api/rooms/${roomId}/unread`, { messageId }).catch((error) =>
        this.announce(`Could not mark as unread: ${error.message}`),
      );
    }
    this.announce("Marked as unread");
  }
}

// A deleted message stays in place as a note until the room is opened again (history no
// longer lists it), so a reader sees that something went rather than text vanishing.
export function showDeleted(li) {
  li.classList.add("deleted");
  li.querySelector(".body").textContent = "Message deleted";
  li.querySelector(".body").hidden = false;
  for (const part of li.querySelectorAll(".actions")) part.remove();
}

function button(text, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  element.addEventListener("click", onClick);
  return element;
}
