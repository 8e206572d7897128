// What a member can do to one message of the open room: edit or delete their own (the HTTP
// API), and mark any message as unread from there on. Each message's buttons sit in its list
// item; how an edit or a delete looks is drawn here too, the same whether this page made it or
// another device did (`chat-message-edited`, `chat-message-deleted`).
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
      group.append(
        button("Edit", () => this.edit(li, roomId, message.id)),
        button("Delete", () => this.remove(li, roomId, message.id)),
      );
    }
    group.append(button("Mark unread", () => this.markUnread(roomId, message.id)));
    li.append(group);
  }

  // The text becomes a box in place: Enter (or Save) sends it, Escape (or Cancel) puts it back.
  edit(li, roomId, messageId) {
    const open = li.querySelector("form.edit textarea");
    if (open) {
      open.focus();
      return;
    }
    const body = li.querySelector(".body");
    const form = document.createElement("form");
    form.className = "edit";
    const box = document.createElement("textarea");
    box.rows = 2;
    box.maxLength = 4000;
    box.required = true;
    box.value = body.textContent;
    box.setAttribute("aria-label", "Edit message");
    const save = document.createElement("button");
    save.type = "submit";
    save.textContent = "Save";
    form.append(box, save, button("Cancel", () => closeEditor(li)));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.saveEdit(li, roomId, messageId, box.value.trim());
    });
    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      } else if (event.key === "Escape") {
        event.stopPropagation(); // the page's Escape closes the room
        closeEditor(li);
      }
    });
    body.hidden = true;
    li.querySelector(".actions").hidden = true;
    body.after(form);
    box.focus();
  }

  async saveEdit(li, roomId, messageId, text) {
    if (!text) return; // an empty message is deleted, not edited
    if (text === li.querySelector(".body").textContent) {
      closeEditor(li);
      return;
    }
    let answer;
    try {
      answer = await api("PATCH", `/api/rooms/${roomId}/messages/${messageId}`, { message: text });
    } catch (error) {
      if (error.code === "not_found") {
        showDeleted(li);
        this.announce("That message was deleted");
      } else {
        this.announce(`Your message was not edited: ${error.message}`);
      }
      return;
    }
    showEdited(li, { body: text, editedAt: answer.editedAt });
    closeEditor(li);
    this.announce("Message edited");
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

// The message's text as it now reads, marked "(edited)" with the time of the edit.
export function showEdited(li, { body, editedAt }) {
  li.querySelector(".body").textContent = String(body ?? "");
  let mark = li.querySelector(".edited");
  if (!mark) {
    mark = document.createElement("span");
    mark.className = "edited";
    mark.textContent = "(edited)";
    li.querySelector(".body").after(mark);
  }
  const when = new Date(editedAt);
  mark.title = Number.isNaN(when.getTime()) ? "" : `Edited ${when.toLocaleString()}`;
}

function closeEditor(li) {
  const form = li.querySelector("form.edit");
  if (!form) return;
  const hadFocus = form.contains(document.activeElement);
  form.remove();
  li.querySelector(".body").hidden = false;
  const actions = li.querySelector(".actions");
  if (actions) actions.hidden = false;
  if (hadFocus) actions?.querySelector("button")?.focus();
}

// A deleted message stays in place as a note until the room is opened again (history no
// longer lists it), so a reader sees that something went rather than text vanishing.
export function showDeleted(li) {
  li.classList.add("deleted");
  li.querySelector(".body").textContent = "Message deleted";
  li.querySelector(".body").hidden = false;
  for (const part of li.querySelectorAll(".actions, .edited, form.edit")) part.remove();
}

function button(text, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  element.addEventListener("click", onClick);
  return element;
}
