// One message's element: role and status as data attributes (data-role, data-status),
// the body (Markdown for replies, plain text for the person's own), images, the error with
// Retry, and the actions (versions ‹ 1/2 ›, Copy, Edit, Regenerate).

import { renderMarkdown, decorateCode, copyText, flash } from "./markdown.js";

export function createMessageElement(msg) {
  const el = document.createElement("article");
  el.className = "msg";
  el.dataset.role = msg.role;
  const head = document.createElement("h3");
  head.className = "msg-author";
  head.textContent = msg.role === "user" ? "You" : "Assistant";
  const images = document.createElement("div");
  images.className = "msg-images";
  images.hidden = true;
  const reasoning = document.createElement("details");
  reasoning.className = "msg-reasoning";
  reasoning.hidden = true;
  const summary = document.createElement("summary");
  summary.textContent = "Reasoning";
  const reasoningBody = document.createElement("div");
  reasoningBody.className = "msg-reasoning-body";
  reasoning.append(summary, reasoningBody);
  const body = document.createElement("div");
  body.className = msg.role === "user" ? "msg-body plain" : "msg-body markdown";
  const note = document.createElement("div");
  note.className = "msg-note";
  note.hidden = true;
  const actions = document.createElement("div");
  actions.className = "msg-actions";
  el.append(head, images, reasoning, body, note, actions);
  el.setAttribute("aria-label", msg.role === "user" ? "Your message" : "Assistant's reply");
  return el;
}

/** Re-render the body (and reasoning) from msg.content; cheap enough once per frame. */
export function renderBody(msg) {
  const el = msg.el;
  const body = el.querySelector(".msg-body");
  if (msg.role === "user") {
    body.textContent = msg.content;
  } else {
    body.replaceChildren(renderMarkdown(msg.content));
    decorateCode(body);
  }
  const reasoning = el.querySelector(".msg-reasoning");
  if (msg.reasoning) {
    reasoning.hidden = false;
    el.querySelector(".msg-reasoning-body").textContent = msg.reasoning;
  } else {
    reasoning.hidden = true;
  }
}

export function renderImages(msg) {
  const box = msg.el.querySelector(".msg-images");
  const urls = Array.isArray(msg.images) ? msg.images : [];
  box.replaceChildren();
  box.hidden = urls.length === 0;
  urls.forEach((url, index) => {
    if (typeof url !== "string" || !/^(?:\/(?!\/)|data:image\/)/.test(url)) return;
    const img = document.createElement("img");
    img.src = url;
    img.alt = `Attached image ${index + 1}`;
    img.loading = "lazy";
    if (url.startsWith("/")) {
      const link = document.createElement("a");
      link.href = url;
      link.target = "_blank";
      link.rel = "noopener";
      link.append(img);
      box.append(link);
    } else {
      box.append(img);
    }
  });
}

export function errorText(error) {
  if (!error) return "";
  if (typeof error === "string") return error;
  let text = error.message || "The reply failed.";
  if (error.retry_after) {
    const seconds = Math.ceil(Number(error.retry_after));
    if (seconds > 0) text += ` You can retry in about ${seconds} second${seconds === 1 ? "" : "s"}.`;
  }
  return text;
}

/**
 * Status, note (error / stopped / interrupted) and action buttons.
 * @param {object} msg
 * @param {{isLastAssistant: boolean, busy: boolean, actions: object}} ctx
 */
export function renderChrome(msg, ctx) {
  const el = msg.el;
  el.dataset.status = msg.status;
  if (msg.id != null) el.dataset.id = String(msg.id);
  el.setAttribute("aria-busy", msg.status === "streaming" ? "true" : "false");
  el.classList.toggle("pending", msg.id == null);

  const note = el.querySelector(".msg-note");
  note.replaceChildren();
  note.className = "msg-note";
  let noteText = "";
  let retry = false;
  if (msg.status === "failed") {
    noteText = errorText(msg.error) || "The reply failed.";
    note.classList.add("error");
    retry = true;
  } else if (msg.status === "interrupted") {
    noteText = "This reply was cut off before it finished.";
    note.classList.add("warn");
    retry = true;
  } else if (msg.status === "stopped") {
    noteText = "Stopped.";
    note.classList.add("muted");
  } else if (msg.id == null && msg.role === "user") {
    noteText = ctx.offline ? "Will be sent when the connection is back." : "Sending…";
    note.classList.add("muted");
  }
  if (noteText) {
    const text = document.createElement("span");
    text.textContent = noteText;
    note.append(text);
    if (msg.error && msg.error.code === "provider_not_connected") {
      const link = document.createElement("a");
      link.href = "/copilot/";
      link.textContent = "Connect Copilot";
      note.append(" ", link);
    }
    if (retry && msg.id != null && !ctx.busy) {
      note.append(" ", button("Retry", "Retry", () => ctx.actions.regenerate(msg)));
    }
  }
  note.hidden = !noteText;

  const actions = el.querySelector(".msg-actions");
  actions.replaceChildren();
  if (msg.id == null || msg.status === "streaming") {
    actions.hidden = true;
    return;
  }
  actions.hidden = false;
  const versions = msg.versions;
  if (versions && versions.count > 1 && Array.isArray(versions.ids)) {
    let position = versions.ids.indexOf(msg.id);
    if (position < 0) position = Math.max(0, (versions.index || 1) - 1);
    const nav = document.createElement("span");
    nav.className = "versions";
    nav.setAttribute("role", "group");
    nav.setAttribute("aria-label", "Versions");
    const prev = button("‹", "Previous version", () => ctx.actions.switchTo(versions.ids[position - 1]));
    prev.disabled = position <= 0 || ctx.busy;
    const label = document.createElement("span");
    label.className = "version-label";
    label.textContent = `${position + 1}/${versions.ids.length}`;
    const next = button("›", "Next version", () => ctx.actions.switchTo(versions.ids[position + 1]));
    next.disabled = position >= versions.ids.length - 1 || ctx.busy;
    nav.append(prev, label, next);
    actions.append(nav);
  }
  const copy = button("Copy", "Copy message", () => {
    copyText(msg.content).then(
      () => flash(copy, "Copied", "Copy"),
      () => flash(copy, "Copy failed", "Copy"),
    );
  });
  if (msg.content) actions.append(copy);
  if (msg.role === "user" && !ctx.busy) {
    actions.append(button("Edit", "Edit", () => ctx.actions.edit(msg)));
  }
  if (msg.role === "assistant" && ctx.isLastAssistant && !ctx.busy) {
    actions.append(button("Regenerate", "Regenerate", () => ctx.actions.regenerate(msg)));
  }
}

function button(text, name, run) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (name !== text) b.setAttribute("aria-label", name);
  b.addEventListener("click", run);
  return b;
}
