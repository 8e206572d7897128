// The WebSocket to /ws/chat/ (shared/PROTOCOL.md), authenticated by the session cookie.
//
// It reconnects by itself after any drop, waiting a capped exponential backoff with full
// jitter (so a restarted server is not hit by every page at the same instant), and resets the
// backoff once a connection has delivered its snapshot. Frames that are not JSON objects with
// a string "type" are logged and skipped: one bad frame must never stop the page.
//
// It asks for combined frames (`?frames=combined`, docs/protocol-extensions.md): one frame per
// room update and its badge, which `splitCombined` turns back into the frames it combines, so
// the rest of the page only knows the default frames of shared/PROTOCOL.md.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;
// A connection that has said nothing for this long, a ping included, is taken as dead: a
// network that vanishes without closing the TCP connection would otherwise look open for minutes.
const PING_EVERY_MS = 20000;
const SILENCE_LIMIT_MS = 30000;
// The server closed the connection because its token or session was revoked, or the user
// deactivated (README, close codes).
const CLOSE_REVOKED = 4003;

export function reconnectDelay(attempt, random = Math.random) {
  const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

// A combined frame carries every field of the frames it `combines` (types listed in order):
// each of them gets the whole frame under its own type and reads the fields it knows.
export function splitCombined(frame) {
  if (!Array.isArray(frame.combines)) return [frame];
  const { combines, ...fields } = frame;
  return combines.filter((type) => typeof type === "string").map((type) => ({ ...fields, type }));
}

export class ChatSocket {
  // onFrame(frame) for every valid frame;
  // onStatus("connecting" | "online" | "offline" | "revoked", info).
  constructor({ path = "/ws/chat/?frames=combined", onFrame, onStatus }) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = `${scheme}//${location.host}${path}`;
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.wasOnline = false;
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.heardAt = Date.now();
    ws.addEventListener("message", (event) => {
      this.heardAt = Date.now();
      this.receive(event.data);
    });
    ws.addEventListener("close", (event) => {
      if (event.code === CLOSE_REVOKED) {
        // The credential behind this connection was revoked: reconnecting would be refused.
        this.ws = null;
        clearInterval(this.pinger);
        this.onStatus("revoked");
        return;
      }
      this.dropped(ws);
    });
    // "error" is always followed by "close", which reconnects.
    clearInterval(this.pinger);
    this.pinger = setInterval(() => this.keepAlive(ws), PING_EVERY_MS);
  }

  dropped(ws) {
    if (this.ws !== ws) return;
    this.ws = null;
    clearInterval(this.pinger);
    this.scheduleReconnect();
  }

  keepAlive(ws) {
    if (Date.now() - this.heardAt > SILENCE_LIMIT_MS) {
      console.warn("chat: the connection went silent, reconnecting");
      this.dropped(ws);
      ws.close();
      return;
    }
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping" }));
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (error) {
      console.warn("chat: ignored a frame that is not JSON", data);
      return;
    }
    if (frame === null || typeof frame !== "object" || typeof frame.type !== "string") {
      console.warn("chat: ignored a frame without a string type", frame);
      return;
    }
    if (frame.type === "unread-state") {
      this.attempt = 0;
      this.wasOnline = true;
      this.onStatus("online");
    }
    for (const part of splitCombined(frame)) {
      try {
        this.onFrame(part);
      } catch (error) {
        console.warn("chat: a frame could not be applied, skipped", part, error);
      }
    }
  }

  scheduleReconnect() {
    const delay = reconnectDelay(this.attempt);
    this.attempt += 1;
    this.onStatus("offline", { delay, wasOnline: this.wasOnline });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  // Reconnect now rather than at the end of the backoff (the browser says it is online).
  retryNow() {
    if (this.ws === null) this.connect();
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  // True when the frame went out; a closed socket sends nothing (callers resend on reconnect).
  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }
}
