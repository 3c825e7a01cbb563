// The chat page's HTTP JSON endpoints (docs/chat-protocol.md, "HTTP").

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export function createApi(csrfToken) {
  async function request(method, path, body) {
    const init = {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    };
    if (method !== "GET") {
      init.headers["X-CSRFToken"] = csrfToken;
    }
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError("Could not reach chatsite. Check your connection and try again.", 0);
    }
    if (response.status === 204) {
      return null;
    }
    let data = null;
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("json")) {
      data = await response.json().catch(() => null);
    }
    if (!response.ok) {
      const message =
        (data && (data.message || data.error?.message || data.error || data.detail)) ||
        plainStatus(response.status);
      throw new ApiError(String(message), response.status);
    }
    return data;
  }

  const conv = (id) => `/chat/api/conversations/${encodeURIComponent(id)}`;
  return {
    listConversations: (q) =>
      request("GET", "/chat/api/conversations" + (q ? `?q=${encodeURIComponent(q)}` : "")),
    getConversation: (id, { before } = {}) =>
      request("GET", conv(id) + (before != null ? `?before=${encodeURIComponent(before)}` : "")),
    patchConversation: (id, fields) => request("PATCH", conv(id), fields),
    deleteConversation: (id) => request("DELETE", conv(id)),
    switchVersion: (id, messageId) => request("POST", `${conv(id)}/switch`, { message_id: messageId }),
    listModels: () => request("GET", "/chat/api/models"),
  };
}

function plainStatus(status) {
  if (status === 401 || status === 403) return "You are signed out or not allowed to do that. Reload the page.";
  if (status === 404) return "That conversation no longer exists.";
  if (status >= 500) return "chatsite had a problem. Try again in a moment.";
  return `The request failed (HTTP ${status}).`;
}
