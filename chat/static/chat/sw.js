// The service worker, served at /sw.js with the whole site as its scope (chat/pages.py).
// It shows a notification for each "chat-message" push and keeps the app badge at the
// server's absolute total; a "badge" push only updates the badge. A push whose message mentions
// the user (`"mention": true`) says so in its title and gets a notification of its own, so a
// later plain message of the same room does not replace it.

function setBadge(count) {
  if (!("setAppBadge" in self.navigator) || !Number.isInteger(count)) return Promise.resolve();
  const update = count > 0 ? self.navigator.setAppBadge(count) : self.navigator.clearAppBadge();
  return update.catch(() => {});
}

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let payload;
  try {
    payload = event.data ? event.data.json() : null;
  } catch (error) {
    console.warn("chat sw: a push that is not JSON, ignored", error);
    return;
  }
  if (payload === null || typeof payload !== "object") return;
  if (payload.type === "badge") {
    event.waitUntil(setBadge(payload.badge));
  } else if (payload.type === "chat-message") {
    const title = String(payload.title ?? "New message");
    const mention = payload.mention === true;
    event.waitUntil(
      Promise.all([
        self.registration.showNotification(mention ? `You were mentioned: ${title}` : title, {
          body: String(payload.body ?? ""),
          tag: mention ? `mention-${payload.messageId}` : `room-${payload.roomId}`,
          renotify: mention,
          data: { roomId: payload.roomId, mention },
        }),
        setBadge(payload.badge),
      ]),
    );
  } else {
    console.warn("chat sw: a push of unknown type, ignored", payload);
  }
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const roomId = event.notification.data?.roomId;
  const url = new URL(Number.isInteger(roomId) ? `/#room-${roomId}` : "/", self.location.origin);
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const open = windows.find((client) => new URL(client.url).origin === url.origin);
      if (open) {
        await open.focus();
        return open.navigate(url.href);
      }
      return self.clients.openWindow(url.href);
    })(),
  );
});
