// Web Push opt-in: an "Enable notifications" button, shown only when the server has a VAPID
// key (GET /api/push/vapid-public-key answers 200) and the browser can take push messages.
// Subscribing registers the subscription with POST /api/devices; the service worker (/sw.js)
// shows what arrives.

import { api } from "./http.js";

function keyBytes(base64url) {
  const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

async function vapidPublicKey() {
  const response = await fetch("/api/push/vapid-public-key", {
    headers: { Accept: "application/json" },
  });
  if (response.status !== 200) return null;
  const body = await response.json();
  return typeof body.publicKey === "string" && body.publicKey ? body.publicKey : null;
}

export async function registerDevice(subscription) {
  return api("POST", "/api/devices", { kind: "webpush", subscription: subscription.toJSON() });
}

export async function setUpPush(button) {
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !window.isSecureContext) {
    return;
  }
  const key = await vapidPublicKey();
  if (key === null) return;
  const registration = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
  const existing = await registration.pushManager.getSubscription();
  if (existing !== null && Notification.permission === "granted") {
    await registerDevice(existing); // idempotent: keeps the server's copy current
    return;
  }
  button.hidden = false;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const permission = await Notification.requestPermission();
      if (permission !== "granted") {
        button.textContent = "Notifications blocked";
        return;
      }
      const subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: keyBytes(key),
      });
      await registerDevice(subscription);
      button.hidden = true;
    } catch (error) {
      console.warn("chat: could not enable notifications", error);
      button.disabled = false;
    }
  });
}
