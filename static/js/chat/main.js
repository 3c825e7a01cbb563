// The chat page: one conversation at a time in the main pane, every conversation in the
// sidebar, one websocket for the tab. Protocol: docs/chat-protocol.md.

import { createApi } from "./api.js";
import { ChatSocket } from "./socket.js";
import { Sidebar } from "./sidebar.js";
import { Attachments } from "./attachments.js";
import { createMessageElement, renderBody, renderChrome, renderImages, errorText } from "./messages.js";

const MODEL_KEY = "chatsite.chat.model";
const root = document.getElementById("chat-app");
const api = createApi(root.dataset.csrf);

const el = {
  sidebar: document.getElementById("chat-sidebar"),
  sidebarToggle: document.getElementById("sidebar-toggle"),
  backdrop: document.getElementById("sidebar-backdrop"),
  newChat: document.getElementById("new-chat"),
  title: document.getElementById("conversation-title"),
  connection: document.getElementById("connection-state"),
  notices: document.getElementById("notices"),
  messages: document.getElementById("messages"),
  log: document.getElementById("message-list"),
  empty: document.getElementById("empty-state"),
  form: document.getElementById("composer"),
  input: document.getElementById("message-input"),
  send: document.getElementById("send-button"),
  stop: document.getElementById("stop-button"),
  attach: document.getElementById("attach-input"),
  attachLabel: document.getElementById("attach-label"),
  attachList: document.getElementById("attachment-list"),
  status: document.getElementById("chat-status"),
  model: document.getElementById("model-select"),
  modelBadges: document.getElementById("model-badges"),
  settingsToggle: document.getElementById("settings-toggle"),
  settings: document.getElementById("settings-panel"),
  settingsForm: document.getElementById("settings-form"),
  systemPrompt: document.getElementById("system-prompt"),
  temperature: document.getElementById("temperature"),
  settingsNote: document.getElementById("settings-note"),
  settingsStatus: document.getElementById("settings-status"),
  unavailable: document.getElementById("models-unavailable"),
};

const state = {
  conversationId: null,
  conversation: null,
  messages: [], // the branch shown, oldest first (its older pages load on scrolling up)
  hasOlder: false, // the server has older messages of this branch than state.messages[0]
  defaultModel: "", // new chats start with it when set (the Models page)
  loadingOlder: false,
  pending: new Map(), // client_id → optimistic user message
  models: [],
  modelId: "",
  loadNo: 0,
  subscribedAfter: null, // {messageId, after} of the last subscribe sent
  refreshedOnce: false,
  resyncAsked: new Set(),
  signedOut: false,
};

// --- Helpers ---------------------------------------------------------------------------
function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function setStatus(text) {
  // One polite line for screen readers: changes on start/stop/failure, never per token.
  if (el.status.textContent !== text) el.status.textContent = text;
}

function notice(text, { kind = "error" } = {}) {
  if (!text) return;
  for (const existing of el.notices.querySelectorAll(".notice-text")) {
    if (existing.textContent === text) return; // already shown
  }
  const box = document.createElement("div");
  box.className = `notice ${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  const span = document.createElement("span");
  span.className = "notice-text";
  span.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "icon";
  close.textContent = "×";
  close.setAttribute("aria-label", "Dismiss");
  close.addEventListener("click", () => {
    box.remove();
    el.input.focus();
  });
  box.append(span, close);
  el.notices.append(box);
}

const byId = (id) => state.messages.find((m) => m.id === id) || null;
const streamingMessage = () => [...state.messages].reverse().find((m) => m.status === "streaming") || null;
const isBusy = () => !!streamingMessage() || state.pending.size > 0;

function currentModel() {
  return state.models.find((m) => m.id === state.modelId) || null;
}

// --- Rendering (throttled to animation frames) ------------------------------------------
const dirty = new Set();
let frameRequested = false;

function scheduleRender(msg) {
  dirty.add(msg);
  if (frameRequested) return;
  frameRequested = true;
  const flush = () => {
    frameRequested = false;
    const stick = nearBottom();
    for (const m of dirty) if (m.el.isConnected) renderBody(m);
    dirty.clear();
    if (stick) scrollToBottom();
  };
  // Background tabs get no animation frames; a timer keeps them current, slowly.
  if (document.hidden) setTimeout(flush, 250);
  else requestAnimationFrame(flush);
}

function nearBottom() {
  const box = el.messages;
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function scrollToBottom() {
  el.messages.scrollTop = el.messages.scrollHeight;
}

function refreshChrome() {
  const busy = isBusy();
  let lastAssistant = null;
  for (const m of state.messages) if (m.role === "assistant") lastAssistant = m;
  const ctx = {
    busy,
    offline: !socket.isOpen,
    actions: { regenerate, edit: startEdit, switchTo },
  };
  for (const m of state.messages) {
    if (m.editing) continue;
    renderChrome(m, { ...ctx, isLastAssistant: m === lastAssistant });
  }
  el.empty.hidden = state.messages.length > 0;
  el.stop.hidden = !streamingMessage();
  el.send.disabled = busy || !state.modelId;
}

// A long history shows its newest messages rendered at once; older ones show as plain
// text first and get their Markdown in idle time, newest first.
const RENDER_AT_ONCE = 60;
const RENDER_CHUNK = 80;
let backlogTimer = null;

function renderBacklog(backlog) {
  if (backlogTimer) cancelIdle(backlogTimer);
  const step = () => {
    backlogTimer = null;
    const stick = nearBottom();
    for (const m of backlog.splice(0, RENDER_CHUNK)) if (m.el.isConnected) renderBody(m);
    if (stick) scrollToBottom();
    if (backlog.length) backlogTimer = idle(step);
  };
  if (backlog.length) backlogTimer = idle(step);
}

function idle(callback) {
  return window.requestIdleCallback
    ? window.requestIdleCallback(callback, { timeout: 200 })
    : window.setTimeout(callback, 16);
}

function cancelIdle(handle) {
  if (window.cancelIdleCallback) window.cancelIdleCallback(handle);
  else window.clearTimeout(handle);
}

function makeMessage(data, { deferBody = false } = {}) {
  const msg = {
    id: data.id ?? null,
    clientId: data.clientId || null,
    role: data.role,
    content: data.content || "",
    reasoning: data.reasoning || "",
    status: data.status || "complete",
    error: data.error || null,
    images: data.images || [],
    versions: data.versions || null,
    parentId: data.parent_id ?? data.parentId ?? null,
    model: data.model || "",
    // The last delta seq the content includes; null when unknown (content from GET).
    seq: data.seq ?? (data.status === "streaming" && !data.content ? 0 : null),
    el: null,
  };
  if (data.status !== "streaming") msg.seq = data.seq ?? null;
  msg.el = createMessageElement(msg);
  if (deferBody) {
    msg.el.classList.add("msg-history");
    msg.el.querySelector(".msg-body").textContent = msg.content;
  } else {
    renderBody(msg);
  }
  renderImages(msg);
  return msg;
}

function renderAll(messages, { hasOlder = false } = {}) {
  dirty.clear();
  setHasOlder(hasOlder);
  const firstRendered = Math.max(0, messages.length - RENDER_AT_ONCE);
  state.messages = messages.map((data, index) =>
    makeMessage(data, { deferBody: index < firstRendered }),
  );
  renderBacklog(state.messages.slice(0, firstRendered).reverse());
  // Keep optimistic messages not yet echoed (a refresh while one is in flight).
  for (const pending of state.pending.values()) state.messages.push(pending);
  el.log.replaceChildren(...state.messages.map((m) => m.el));
  refreshChrome();
  scrollToBottom();
}

/** A message the server sent that the branch shown does not have yet. */
function insertMessage(msg) {
  // A new version replaces the old branch from its parent on.
  const parentIndex = msg.parentId == null ? -1 : state.messages.findIndex((m) => m.id === msg.parentId);
  if (msg.parentId == null || parentIndex >= 0) {
    const keep = state.messages.slice(0, parentIndex + 1);
    for (const gone of state.messages.slice(parentIndex + 1)) {
      if (gone.id == null) keep.push(gone); // optimistic, still on its way
      else gone.el.remove();
    }
    state.messages = keep;
  }
  const pendingIndex = state.messages.findIndex((m) => m.id == null);
  if (pendingIndex >= 0 && msg.role === "assistant") {
    state.messages.splice(pendingIndex, 0, msg);
  } else {
    state.messages.push(msg);
  }
  el.log.replaceChildren(...state.messages.map((m) => m.el));
}

function applyServerMessage(local, data) {
  local.id = data.id;
  local.role = data.role;
  local.error = data.error || null;
  local.versions = data.versions || null;
  local.parentId = data.parent_id ?? local.parentId;
  local.model = data.model || local.model;
  if (Array.isArray(data.images) && (data.images.length || local.id != null)) {
    if (data.images.length || !local.images.length) {
      local.images = data.images;
      renderImages(local);
    }
  }
  let contentChanged = false;
  if (data.seq != null) {
    // A snapshot: the whole text up to `seq`. Older than what we have? Keep ours.
    if (local.seq == null || data.seq >= local.seq) {
      local.content = data.content || "";
      local.reasoning = data.reasoning || "";
      local.seq = data.seq;
      contentChanged = true;
    }
  } else if (data.status !== "streaming") {
    local.content = data.content ?? local.content;
    local.reasoning = data.reasoning ?? local.reasoning;
    contentChanged = true;
  } else if (local.seq == null) {
    local.content = data.content || "";
    local.reasoning = data.reasoning || "";
    if (!local.content) local.seq = 0;
    contentChanged = true;
  }
  local.status = data.status || local.status;
  if (contentChanged) scheduleRender(local);
}

// --- Socket frames ----------------------------------------------------------------------
const socket = new ChatSocket(root.dataset.wsPath || "/ws/chat/", {
  onOpen() {
    subscribeCurrent();
    refreshChrome();
  },
  onState(connection) {
    el.connection.hidden = connection === "open";
    el.connection.textContent = connection === "closed" ? "Disconnected" : "Reconnecting…";
    if (connection === "reconnecting") el.connection.textContent = "Reconnecting…";
    refreshChrome();
  },
  onFatal(code) {
    signedOut(
      code === 4401
        ? "You are signed out. Reload the page to sign in again."
        : "Your account is not allowed to chat (pending approval or disabled).",
    );
  },
  onFrame(frame) {
    switch (frame.type) {
      case "subscribed":
        return onSubscribed(frame);
      case "conversation":
        return onConversation(frame.conversation);
      case "message":
        return onMessage(frame);
      case "delta":
        return onDelta(frame);
      case "done":
        return onDone(frame);
      case "error":
        return onError(frame);
      case "signed_out":
        return signedOut(frame.message || "You were signed out.");
      default:
        return undefined;
    }
  },
});

function signedOut(text) {
  state.signedOut = true;
  notice(text);
  el.connection.hidden = false;
  el.connection.textContent = "Disconnected";
  el.send.disabled = true;
}

function subscribeCurrent() {
  if (state.conversationId == null || !socket.isOpen) return;
  const streaming = streamingMessage();
  const after = streaming && streaming.seq != null ? streaming.seq : -1;
  state.subscribedAfter = { messageId: streaming ? streaming.id : null, after };
  socket.send({ type: "subscribe", conversation_id: state.conversationId, after }, { queueable: false });
}

function onSubscribed(frame) {
  if (frame.conversation_id !== state.conversationId) return;
  const sent = state.subscribedAfter || { messageId: null, after: -1 };
  const live = frame.streaming_message_id ?? null;
  const local = streamingMessage();
  // What we thought was streaming ended while we were away (or another reply started):
  // the replay cannot tell us how it ended, the history can.
  const stale = (sent.after >= 0 && live !== sent.messageId) || (live == null && local);
  if (stale && !state.refreshedOnce) {
    state.refreshedOnce = true;
    loadConversation(state.conversationId, { keepScroll: true }).then(() => subscribeCurrent());
    return;
  }
  state.refreshedOnce = false;
  if (local && live === local.id) setStatus("The assistant is replying…");
}

function onConversation(conv) {
  if (!conv || conv.id == null) return;
  sidebar.upsert(conv);
  if (conv.id === state.conversationId) {
    state.conversation = { ...state.conversation, ...conv };
    showTitle();
  }
}

function adoptConversation(id) {
  state.conversationId = id;
  state.conversation = { ...(sidebar.get(id) || {}), id };
  history.pushState({ conversationId: id }, "", `/c/${id}`);
  sidebar.setCurrent(id);
  showTitle();
  updateSettingsPanel();
  subscribeCurrent();
}

function onMessage(frame) {
  const data = frame.message;
  if (!data) return;
  const conversationId = frame.conversation_id ?? data.conversation_id;
  const pending = frame.client_id ? state.pending.get(frame.client_id) : null;
  if (pending) {
    state.pending.delete(frame.client_id);
    if (state.conversationId == null && pending.conversationId == null) adoptConversation(conversationId);
    if (conversationId !== state.conversationId) return;
    applyServerMessage(pending, data);
    renderImages(pending);
    // Put it where the branch says (an edit replaces the versions after its parent).
    state.messages = state.messages.filter((m) => m !== pending);
    pending.el.remove();
    insertMessage(pending);
    refreshChrome();
    return;
  }
  if (conversationId !== state.conversationId) return;
  const existing = data.id != null ? byId(data.id) : null;
  if (existing) {
    applyServerMessage(existing, data);
  } else {
    insertMessage(makeMessage(data));
    scrollToBottom();
  }
  if (data.status === "streaming") setStatus("The assistant is replying…");
  refreshChrome();
}

function onDelta(frame) {
  if (frame.conversation_id !== state.conversationId) return;
  const msg = byId(frame.message_id);
  if (!msg) {
    resync(frame.message_id, -1);
    return;
  }
  if (msg.seq == null) {
    // No reliable base (text from GET): wait for the snapshot subscribe asked for.
    resync(msg.id, -1);
    return;
  }
  if (frame.seq <= msg.seq) return; // seen already (a replay, or two paths)
  if (frame.seq > msg.seq + 1) {
    resync(msg.id, msg.seq); // a gap: ask for the rest
    return;
  }
  state.resyncAsked.delete(msg.id);
  msg.seq = frame.seq;
  if (frame.text) msg.content += frame.text;
  if (frame.reasoning) msg.reasoning += frame.reasoning;
  if (msg.status !== "streaming") {
    msg.status = "streaming";
    refreshChrome();
  }
  scheduleRender(msg);
}

function resync(messageId, after) {
  const key = messageId ?? "unknown";
  if (state.resyncAsked.has(key)) return;
  state.resyncAsked.add(key);
  state.subscribedAfter = { messageId, after };
  socket.send({ type: "subscribe", conversation_id: state.conversationId, after }, { queueable: false });
}

function onDone(frame) {
  if (frame.conversation_id !== state.conversationId) return;
  const msg = byId(frame.message_id);
  if (!msg) return;
  msg.status = frame.status || "complete";
  msg.error = frame.error || null;
  state.resyncAsked.delete(msg.id);
  scheduleRender(msg);
  refreshChrome();
  if (msg.status === "complete") setStatus("Reply complete.");
  else if (msg.status === "stopped") setStatus("Reply stopped.");
  else setStatus(`The reply failed: ${errorText(msg.error) || "unknown error"}`);
}

function onError(frame) {
  const pending = frame.client_id ? state.pending.get(frame.client_id) : null;
  if (pending) {
    // Refused: nothing was written. Give the text back.
    state.pending.delete(frame.client_id);
    state.messages = state.messages.filter((m) => m !== pending);
    pending.el.remove();
    if (!el.input.value.trim() && pending.kind === "send") {
      el.input.value = pending.content;
      autosize();
    }
    refreshChrome();
  }
  notice(frame.message || "chatsite refused that request.");
  setStatus(frame.message || "");
}

// --- Older messages: a long conversation opens on its newest page; scrolling up (or the
// button, for keyboards) loads the page before it, keeping what is on screen in place.
const olderButton = document.createElement("button");
olderButton.type = "button";
olderButton.className = "load-older";
olderButton.textContent = "Load older messages";
olderButton.hidden = true;
el.log.before(olderButton);
olderButton.addEventListener("click", () => loadOlder());
el.messages.addEventListener("scroll", () => {
  if (state.hasOlder && el.messages.scrollTop < 400) loadOlder();
}, { passive: true });

function setHasOlder(hasOlder) {
  state.hasOlder = hasOlder;
  olderButton.hidden = !hasOlder;
}

async function loadOlder() {
  const oldest = state.messages.find((m) => m.id != null);
  if (!state.hasOlder || state.loadingOlder || state.conversationId == null || !oldest) return;
  const id = state.conversationId;
  const no = state.loadNo;
  state.loadingOlder = true;
  olderButton.disabled = true;
  olderButton.textContent = "Loading older messages…";
  try {
    const data = await api.getConversation(id, { before: oldest.id });
    if (no !== state.loadNo || id !== state.conversationId || state.messages[0] !== oldest) return;
    // Rendered now, not in idle time: these are the ones the person scrolled up to read.
    const older = (data.messages || []).map((item) => makeMessage(item));
    const box = el.messages;
    const fromBottom = box.scrollHeight - box.scrollTop;
    state.messages = [...older, ...state.messages];
    el.log.prepend(...older.map((m) => m.el));
    setHasOlder(Boolean(data.has_older));
    box.scrollTop = box.scrollHeight - fromBottom; // the same messages stay on screen
    refreshChrome();
  } catch (error) {
    notice(`Older messages could not be loaded: ${error.message}`);
  } finally {
    state.loadingOlder = false;
    olderButton.disabled = false;
    olderButton.textContent = "Load older messages";
  }
}

// --- Loading conversations ----------------------------------------------------------------
async function loadConversation(id, { keepScroll = false } = {}) {
  const no = ++state.loadNo;
  root.setAttribute("aria-busy", "true");
  try {
    const data = await api.getConversation(id);
    if (no !== state.loadNo) return false;
    showConversation(data, { keepScroll });
    return true;
  } catch (error) {
    if (no !== state.loadNo) return false;
    notice(error.message);
    if (error.status === 404) newChat({ push: true });
    return false;
  } finally {
    if (no === state.loadNo) root.removeAttribute("aria-busy");
  }
}

function showConversation(data, { keepScroll = false } = {}) {
  const top = el.messages.scrollTop;
  state.conversation = data.conversation;
  state.conversationId = data.conversation.id;
  state.resyncAsked.clear();
  renderAll(data.messages || [], { hasOlder: Boolean(data.has_older) });
  if (keepScroll) el.messages.scrollTop = top;
  showTitle();
  if (data.conversation.model && state.models.some((m) => m.id === data.conversation.model)) {
    selectModel(data.conversation.model, { save: false });
  }
  updateSettingsPanel();
  const streaming = streamingMessage();
  setStatus(streaming ? "The assistant is replying…" : "");
}

async function openConversation(id, { push = true } = {}) {
  closeSidebarOnPhone();
  if (state.conversationId != null && state.conversationId !== id) {
    socket.send({ type: "unsubscribe", conversation_id: state.conversationId }, { queueable: false });
  }
  state.pending.clear();
  state.conversationId = id;
  sidebar.setCurrent(id);
  if (push) history.pushState({ conversationId: id }, "", `/c/${id}`);
  if (await loadConversation(id)) {
    subscribeCurrent();
    el.input.focus();
  }
}

function newChat({ push = true } = {}) {
  closeSidebarOnPhone();
  if (state.conversationId != null) {
    socket.send({ type: "unsubscribe", conversation_id: state.conversationId }, { queueable: false });
  }
  state.loadNo++;
  state.conversationId = null;
  state.conversation = null;
  state.draftSettings = null;
  state.pending.clear();
  renderAll([]);
  if (state.defaultModel && state.models.some((m) => m.id === state.defaultModel)) {
    selectModel(state.defaultModel, { save: false });
  }
  sidebar.setCurrent(null);
  if (push && location.pathname !== "/") history.pushState({ conversationId: null }, "", "/");
  showTitle();
  updateSettingsPanel();
  setStatus("");
  el.input.focus();
}

function showTitle() {
  const title = state.conversation ? state.conversation.title || "New conversation" : "New chat";
  el.title.textContent = title;
  document.title = `${title} · chatsite`;
}

// --- Sending, stopping, regenerating, editing --------------------------------------------
function sendMessage() {
  if (state.signedOut) return;
  const text = el.input.value;
  const images = attachments.dataUrls().filter(Boolean);
  if (!text.trim() && images.length === 0) return;
  if (isBusy()) return;
  if (!state.modelId) {
    notice("Choose a model first.");
    return;
  }
  const last = state.messages[state.messages.length - 1];
  const clientId = uuid();
  const msg = makeMessage({
    role: "user",
    content: text,
    status: "complete",
    images,
    parent_id: last ? last.id : null,
  });
  msg.clientId = clientId;
  msg.kind = "send";
  msg.conversationId = state.conversationId;
  state.pending.set(clientId, msg);
  state.messages.push(msg);
  el.log.append(msg.el);
  const frame = {
    type: "send",
    client_id: clientId,
    conversation_id: state.conversationId,
    text,
    model: state.modelId,
    images,
  };
  // Settings chosen before a new chat's first message travel with it.
  if (state.conversationId == null && state.draftSettings) Object.assign(frame, state.draftSettings);
  socket.send(frame);
  el.input.value = "";
  attachments.clear();
  autosize();
  refreshChrome();
  scrollToBottom();
  setStatus(socket.isOpen ? "Sending…" : "Offline: the message will be sent when the connection is back.");
  el.input.focus();
}

function stopReply() {
  if (state.conversationId == null || !streamingMessage()) return;
  socket.send({ type: "stop", conversation_id: state.conversationId });
  setStatus("Stopping…");
  el.input.focus();
}

function regenerate(msg) {
  if (state.conversationId == null || msg.id == null || isBusy()) return;
  socket.send({
    type: "regenerate",
    conversation_id: state.conversationId,
    message_id: msg.id,
    model: state.modelId || undefined,
  });
  setStatus("Regenerating…");
  el.input.focus();
}

function startEdit(msg) {
  if (isBusy() || msg.id == null) return;
  msg.editing = true;
  const body = msg.el.querySelector(".msg-body");
  const actions = msg.el.querySelector(".msg-actions");
  body.hidden = true;
  actions.hidden = true;
  const form = document.createElement("form");
  form.className = "edit-form";
  const label = document.createElement("label");
  label.className = "visually-hidden";
  const area = document.createElement("textarea");
  area.id = `edit-${msg.id}`;
  label.htmlFor = area.id;
  label.textContent = "Edit message";
  area.value = msg.content;
  area.rows = Math.min(12, Math.max(2, msg.content.split("\n").length));
  const save = document.createElement("button");
  save.type = "submit";
  save.className = "primary";
  save.textContent = "Save and send";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.textContent = "Cancel";
  const row = document.createElement("div");
  row.className = "edit-buttons";
  row.append(cancel, save);
  form.append(label, area, row);
  msg.el.insertBefore(form, body);
  area.focus();
  const close = () => {
    msg.editing = false;
    form.remove();
    body.hidden = false;
    refreshChrome();
  };
  cancel.addEventListener("click", () => {
    close();
    msg.el.querySelector(".msg-actions button[aria-label=Edit], .msg-actions button")?.focus();
  });
  area.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      cancel.click();
    } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = area.value;
    if (!text.trim() || isBusy()) return;
    close();
    if (text === msg.content) return;
    socket.send({
      type: "edit",
      conversation_id: state.conversationId,
      message_id: msg.id,
      text,
      model: state.modelId || undefined,
      client_id: uuid(),
    });
    setStatus("Sending the edited message…");
    el.input.focus();
  });
}

async function switchTo(messageId) {
  if (state.conversationId == null || messageId == null || isBusy()) return;
  try {
    const data = await api.switchVersion(state.conversationId, messageId);
    showConversation(data, { keepScroll: true });
    subscribeCurrent();
    const again = byId(messageId);
    again?.el.querySelector(".versions button:not([disabled])")?.focus();
  } catch (error) {
    notice(error.message);
  }
}

// --- Models and settings -----------------------------------------------------------------
async function loadModels() {
  let data;
  try {
    data = await api.listModels();
  } catch (error) {
    notice(`The model list could not be loaded: ${error.message}`);
    return;
  }
  state.models = Array.isArray(data?.models) ? data.models : [];
  state.defaultModel = data?.default_model || "";
  el.model.replaceChildren();
  const groups = new Map();
  for (const model of state.models) {
    const provider = model.provider || "Models";
    if (!groups.has(provider)) groups.set(provider, []);
    groups.get(provider).push(model);
  }
  for (const [provider, models] of groups) {
    const group = document.createElement("optgroup");
    group.label = provider;
    for (const model of models) {
      const option = document.createElement("option");
      option.value = model.id;
      const tags = [model.vision ? "vision" : "", model.tools ? "tools" : ""].filter(Boolean);
      option.textContent = model.name + (tags.length ? ` · ${tags.join(" · ")}` : "");
      group.append(option);
    }
    el.model.append(group);
  }
  const reasons = Object.entries(data?.unavailable || {});
  el.unavailable.replaceChildren();
  el.unavailable.hidden = reasons.length === 0;
  for (const [provider, reason] of reasons) {
    const li = document.createElement("li");
    li.textContent = `${provider}: ${reason}`;
    el.unavailable.append(li);
  }
  if (state.models.length === 0) {
    el.model.disabled = true;
    const option = document.createElement("option");
    option.textContent = "No models available";
    el.model.append(option);
    notice("No models are available to you yet. Connect GitHub Models or Copilot on the Models page.", {
      kind: "info",
    });
  } else {
    el.model.disabled = false;
  }
  const has = (id) => id && state.models.some((m) => m.id === id);
  let pick = "";
  if (has(state.conversation?.model)) pick = state.conversation.model;
  else if (has(state.defaultModel)) pick = state.defaultModel; // chosen on the Models page
  else if (has(localStorage.getItem(MODEL_KEY))) pick = localStorage.getItem(MODEL_KEY);
  else if (has(data?.last_model)) pick = data.last_model;
  else if (state.models.length) pick = state.models[0].id;
  selectModel(pick, { save: false });
}

function selectModel(id, { save }) {
  state.modelId = id || "";
  if (id) el.model.value = id;
  const model = currentModel();
  el.modelBadges.replaceChildren();
  if (model) {
    for (const [on, name] of [[model.vision, "vision"], [model.tools, "tools"]]) {
      if (!on) continue;
      const badge = document.createElement("span");
      badge.className = `badge ${name}`;
      badge.textContent = name;
      el.modelBadges.append(badge);
    }
  }
  const vision = !!model?.vision;
  el.attach.disabled = !vision;
  el.attachLabel.classList.toggle("disabled", !vision);
  el.attachLabel.title = vision ? "Attach images (PNG, JPEG, GIF, WebP; up to 4, 5 MB each)" : "This model does not take images";
  if (!vision && attachments.count) {
    attachments.clear();
    notice("The images were removed: the model you picked does not take images.", { kind: "info" });
  }
  if (save && id) {
    localStorage.setItem(MODEL_KEY, id);
    if (state.conversationId != null) {
      api.patchConversation(state.conversationId, { model: id }).catch((error) => notice(error.message));
    }
  }
  refreshChrome();
}

// Which conversation ("new" for a chat not started yet) the person has unsaved edits in
// the settings panel for. A refresh of that same conversation (a resync after the socket
// came back, say) must not put the saved values back over what they are typing.
let settingsEditedFor = null;
el.settingsForm.addEventListener("input", () => {
  settingsEditedFor = state.conversationId ?? "new";
});

function updateSettingsPanel() {
  if (settingsEditedFor !== (state.conversationId ?? "new")) {
    settingsEditedFor = null;
    const has = state.conversationId != null;
    const conv = has ? state.conversation : state.draftSettings;
    el.systemPrompt.value = conv?.system_prompt || "";
    el.temperature.value = conv?.temperature ?? "";
    el.settingsStatus.textContent = "";
  }
  for (const field of el.settingsForm.elements) field.disabled = false;
  el.settingsNote.hidden = true;
}

async function saveSettings(event) {
  event.preventDefault();
  const raw = el.temperature.value.trim();
  let temperature = null;
  if (raw !== "") {
    temperature = Number(raw);
    if (!Number.isFinite(temperature) || temperature < 0 || temperature > 2) {
      el.settingsStatus.textContent = "Temperature is a number from 0 to 2, or empty for the model's default.";
      el.temperature.focus();
      return;
    }
  }
  if (state.conversationId == null) {
    state.draftSettings = { system_prompt: el.systemPrompt.value, temperature };
    settingsEditedFor = null;
    el.settingsStatus.textContent = "Saved for this new chat.";
    return;
  }
  el.settingsStatus.textContent = "Saving…";
  try {
    const answer = await api.patchConversation(state.conversationId, {
      system_prompt: el.systemPrompt.value,
      temperature,
    });
    const conv = answer?.conversation || answer;
    state.conversation = { ...state.conversation, system_prompt: el.systemPrompt.value, temperature, ...(conv || {}) };
    settingsEditedFor = null;
    el.settingsStatus.textContent = "Saved.";
  } catch (error) {
    el.settingsStatus.textContent = error.message;
  }
}

// --- Composer ------------------------------------------------------------------------------
const attachments = new Attachments(el.attachList, (text) => notice(text));

function autosize() {
  el.input.style.height = "auto";
  el.input.style.height = `${Math.min(el.input.scrollHeight + 2, window.innerHeight * 0.4)}px`;
}

el.form.addEventListener("submit", (event) => {
  event.preventDefault();
  sendMessage();
});
el.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendMessage();
  }
});
el.input.addEventListener("input", autosize);
el.input.addEventListener("paste", (event) => {
  const files = [...(event.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
  if (!files.length) return;
  event.preventDefault();
  if (!currentModel()?.vision) {
    notice("The model you picked does not take images. Pick one marked “vision”.");
    return;
  }
  attachments.add(files);
});
el.attach.addEventListener("change", () => {
  attachments.add([...el.attach.files]);
  el.attach.value = "";
});
el.stop.addEventListener("click", stopReply);
el.newChat.addEventListener("click", () => newChat({ push: true }));
el.model.addEventListener("change", () => selectModel(el.model.value, { save: true }));
el.settingsForm.addEventListener("submit", saveSettings);
el.settingsToggle.addEventListener("click", () => {
  const open = el.settings.hidden;
  el.settings.hidden = !open;
  el.settingsToggle.setAttribute("aria-expanded", String(open));
  if (open && !el.systemPrompt.disabled) el.systemPrompt.focus();
});

document.addEventListener("keydown", (event) => {
  // Ctrl+Shift+O (Cmd+Shift+O on a Mac) starts a new chat, as in other chat apps.
  if ((event.ctrlKey || event.metaKey) && event.shiftKey && event.key.toLowerCase() === "o") {
    event.preventDefault();
    newChat({ push: true }); // as the New chat button: a reply streaming goes on
    el.input.focus();
  }
});

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented) return;
  if (document.querySelector("dialog[open]")) return;
  if (el.sidebar.classList.contains("open")) {
    closeSidebarOnPhone();
    el.sidebarToggle.focus();
    return;
  }
  if (streamingMessage()) {
    event.preventDefault();
    stopReply();
  }
});

// --- Sidebar (collapses behind a button on phones) ----------------------------------------
const sidebar = new Sidebar(el.sidebar, api, {
  open: (id) => openConversation(id),
  deleted: (id) => {
    if (id === state.conversationId) newChat({ push: true });
    else el.input.focus();
  },
  renamed: (conv) => onConversation(conv),
  notice: (text) => notice(text),
});

function closeSidebarOnPhone() {
  el.sidebar.classList.remove("open");
  el.backdrop.hidden = true;
  el.sidebarToggle.setAttribute("aria-expanded", "false");
}

el.sidebarToggle.addEventListener("click", () => {
  const open = !el.sidebar.classList.contains("open");
  el.sidebar.classList.toggle("open", open);
  el.backdrop.hidden = !open;
  el.sidebarToggle.setAttribute("aria-expanded", String(open));
  if (open) el.sidebar.querySelector("#new-chat").focus();
});
el.backdrop.addEventListener("click", closeSidebarOnPhone);

window.addEventListener("popstate", () => {
  const match = location.pathname.match(/^\/c\/(\d+)\/?$/);
  if (match) openConversation(Number(match[1]), { push: false });
  else newChat({ push: false });
});

// --- Start ----------------------------------------------------------------------------------
// For the browser tests: drop the connection as a network failure would.
// And reload the conversation shown, as a resync after a reconnect does.
window.chatsiteDebug = {
  dropConnection: () => socket.simulateDrop(),
  reloadConversation: () => loadConversation(state.conversationId, { keepScroll: true }),
};

async function start() {
  const initial = root.dataset.conversationId ? Number(root.dataset.conversationId) : null;
  sidebar.load("");
  const models = loadModels();
  if (initial != null) {
    state.conversationId = initial;
    sidebar.setCurrent(initial);
    await loadConversation(initial);
  } else {
    newChat({ push: false });
  }
  await models;
  if (state.conversation?.model && state.models.some((m) => m.id === state.conversation.model)) {
    selectModel(state.conversation.model, { save: false });
  }
  socket.connect(); // subscribes to the conversation shown once open
  autosize();
  el.input.focus();
}

start();
