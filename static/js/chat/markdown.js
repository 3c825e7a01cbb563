// Markdown → sanitized HTML for model replies: marked (GFM), DOMPurify, highlight.js.
// Model output is untrusted: every byte goes through DOMPurify before reaching the DOM,
// links open in a new tab without an opener, and only http(s)/mailto links survive.

import { Marked } from "../../vendor/marked/marked.esm.js";
import DOMPurify from "../../vendor/dompurify/purify.es.js";
import hljs from "../../vendor/highlight/highlight.min.js";

const marked = new Marked({ gfm: true, breaks: false, async: false });
marked.use({
  renderer: {
    // Keep a fence's language in data-lang (DOMPurify drops class attributes).
    code({ text, lang }) {
      const language = ((lang || "").match(/^[\w+#.-]*/) || [""])[0];
      return `<pre><code data-lang="${escapeHtml(language)}">${escapeHtml(text)}</code></pre>\n`;
    },
  },
});

function escapeHtml(text) {
  return String(text)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

const SAFE_URL = /^(?:https?:|mailto:|#|\/(?!\/))/i;

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    const href = node.getAttribute("href") || "";
    if (href && !SAFE_URL.test(href.trim())) {
      node.removeAttribute("href");
    }
    if (node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  }
  if (node.tagName === "IMG") {
    // Only our own attachments and inline data images can load (CSP would block the rest
    // anyway); drop the others so the page shows no broken images.
    const src = node.getAttribute("src") || "";
    if (!/^(?:\/(?!\/)|data:image\/)/i.test(src)) node.removeAttribute("src");
  }
});

const PURIFY_OPTIONS = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
  FORBID_ATTR: ["style", "class", "id"],
};

/** Markdown text → a sanitized DocumentFragment. */
export function renderMarkdown(text) {
  let html;
  try {
    html = marked.parse(text || "");
  } catch {
    const pre = document.createElement("pre");
    pre.textContent = text || "";
    const fragment = document.createDocumentFragment();
    fragment.append(pre);
    return fragment;
  }
  return DOMPurify.sanitize(html, { ...PURIFY_OPTIONS, RETURN_DOM_FRAGMENT: true });
}

/** Highlight code blocks and give each a copy button. Call after inserting the fragment. */
export function decorateCode(root, { onCopy } = {}) {
  for (const code of root.querySelectorAll("pre > code")) {
    const pre = code.parentElement;
    if (pre.parentElement && pre.parentElement.classList.contains("code-block")) continue;
    // The fence's language (see the renderer above), else auto-detection among the
    // common languages.
    const lang = code.dataset.lang;
    try {
      if (lang && hljs.getLanguage(lang)) {
        code.innerHTML = hljs.highlight(code.textContent, { language: lang, ignoreIllegals: true }).value;
      } else {
        code.innerHTML = hljs.highlightAuto(code.textContent).value;
      }
      code.classList.add("hljs");
    } catch {
      /* leave it plain */
    }
    const wrapper = document.createElement("div");
    wrapper.className = "code-block";
    const bar = document.createElement("div");
    bar.className = "code-bar";
    const label = document.createElement("span");
    label.className = "code-lang";
    label.textContent = lang || "";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy-code";
    button.textContent = "Copy code";
    button.addEventListener("click", () => {
      copyText(code.textContent).then(
        () => flash(button, "Copied", "Copy code"),
        () => flash(button, "Copy failed", "Copy code"),
      );
      if (onCopy) onCopy();
    });
    bar.append(label, button);
    pre.replaceWith(wrapper);
    wrapper.append(bar, pre);
  }
}

export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // http:// on a LAN address has no async clipboard: the old way still works.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.append(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("copy failed");
}

export function flash(button, text, back) {
  button.textContent = text;
  clearTimeout(button._flash);
  button._flash = setTimeout(() => {
    button.textContent = back;
  }, 1500);
}
