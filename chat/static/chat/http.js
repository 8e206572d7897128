// The page's calls to the HTTP API: JSON in and out, the session's CSRF token on every write
// (Django refuses a session request that changes something without it), and the API's error
// body (`{"error": CODE, "message": TEXT}`) turned into an ApiError callers can show.

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Resolves to the answer's JSON body (null for 204), rejects with an ApiError otherwise.
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrfToken();
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    const message = payload?.message ?? `${method} ${path} answered ${response.status}`;
    throw new ApiError(response.status, payload?.error ?? null, message);
  }
  return payload;
}
