// The conversation list: pinned on top, then Today / Yesterday / Previous 7 days / Older,
// newest first; search (debounced) and per-conversation rename, pin and delete.

const DAY = 24 * 60 * 60 * 1000;

export class Sidebar {
  constructor(root, api, handlers) {
    this.root = root;
    this.api = api;
    this.handlers = handlers; // {open(id), deleted(id), renamed(conv), notice(text)}
    this.listEl = root.querySelector("#conversation-list");
    this.emptyEl = root.querySelector("#conversation-empty");
    this.search = root.querySelector("#conversation-search");
    this.dialog = document.getElementById("delete-dialog");
    this.conversations = [];
    this.query = "";
    this.currentId = null;
    this.requestNo = 0;
    this.renamingId = null;
    let timer = null;
    this.search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.load(this.search.value.trim()), 250);
    });
    this.search.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.search.value) {
        event.stopPropagation();
        this.search.value = "";
        this.load("");
      }
    });
  }

  async load(query = this.query) {
    this.query = query;
    const no = ++this.requestNo;
    this.root.setAttribute("aria-busy", "true");
    try {
      const data = await this.api.listConversations(query);
      if (no !== this.requestNo) return; // a newer search answered first
      this.conversations = Array.isArray(data) ? data : data?.conversations || [];
      this.render();
    } catch (error) {
      if (no === this.requestNo) this.handlers.notice(error.message);
    } finally {
      if (no === this.requestNo) this.root.removeAttribute("aria-busy");
    }
  }

  setCurrent(id) {
    this.currentId = id;
    for (const link of this.listEl.querySelectorAll("a.conversation-link")) {
      if (Number(link.dataset.id) === id) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  get(id) {
    return this.conversations.find((conv) => conv.id === id) || null;
  }

  /** A `conversation` frame or a PATCH answer: insert or update, keep the order. */
  upsert(conv) {
    const index = this.conversations.findIndex((other) => other.id === conv.id);
    if (index >= 0) {
      this.conversations[index] = { ...this.conversations[index], ...conv };
    } else if (!this.query) {
      this.conversations.push(conv);
    } else {
      return; // a search is shown; a new conversation need not match it
    }
    this.render();
  }

  remove(id) {
    this.conversations = this.conversations.filter((conv) => conv.id !== id);
    this.render();
  }

  sorted() {
    return [...this.conversations].sort((a, b) => {
      if (!!a.pinned !== !!b.pinned) return a.pinned ? -1 : 1;
      return String(b.updated_at || "").localeCompare(String(a.updated_at || "")) || b.id - a.id;
    });
  }

  render() {
    if (this.renamingId !== null) return; // do not pull the input from under the person
    const focusedId = document.activeElement?.closest?.("li[data-id]")?.dataset.id;
    const focusedAction = document.activeElement?.dataset?.action;
    const groups = new Map();
    for (const conv of this.sorted()) {
      const name = conv.pinned ? "Pinned" : groupName(conv.updated_at);
      if (!groups.has(name)) groups.set(name, []);
      groups.get(name).push(conv);
    }
    const fragment = document.createDocumentFragment();
    for (const [name, convs] of groups) {
      const section = document.createElement("section");
      section.className = "conversation-group";
      const heading = document.createElement("h3");
      heading.textContent = name;
      const ul = document.createElement("ul");
      for (const conv of convs) ul.append(this.item(conv));
      section.append(heading, ul);
      fragment.append(section);
    }
    this.listEl.replaceChildren(fragment);
    this.emptyEl.hidden = this.conversations.length > 0;
    this.emptyEl.textContent = this.query ? "No conversation matches." : "No conversations yet.";
    this.setCurrent(this.currentId);
    if (focusedId) {
      const again = this.listEl.querySelector(
        `li[data-id="${CSS.escape(focusedId)}"] ${focusedAction ? `[data-action="${focusedAction}"]` : "a"}`,
      );
      if (again) again.focus();
    }
  }

  item(conv) {
    const li = document.createElement("li");
    li.dataset.id = String(conv.id);
    li.className = "conversation-item";
    const title = conv.title || "New conversation";
    const link = document.createElement("a");
    link.className = "conversation-link";
    link.href = `/c/${conv.id}`;
    link.dataset.id = String(conv.id);
    link.textContent = title;
    link.title = title;
    link.addEventListener("click", (event) => {
      if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      this.handlers.open(conv.id);
    });
    const actions = document.createElement("span");
    actions.className = "conversation-actions";
    actions.append(
      this.action("pin", conv.pinned ? "Unpin" : "Pin", conv.pinned ? ICONS.pinned : ICONS.pin, title, () =>
        this.setPinned(conv.id, !conv.pinned),
      ),
      this.action("rename", "Rename", ICONS.rename, title, () => this.startRename(li, conv)),
      this.action("delete", "Delete", ICONS.delete, title, () => this.confirmDelete(conv)),
    );
    li.append(link, actions);
    if (conv.pinned) li.classList.add("pinned");
    return li;
  }

  action(kind, verb, paths, title, run) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `icon action-${kind}`;
    button.dataset.action = kind;
    button.append(svgIcon(paths));
    button.title = verb;
    button.setAttribute("aria-label", `${verb} “${title}”`);
    button.addEventListener("click", run);
    return button;
  }

  async setPinned(id, pinned) {
    try {
      const conv = await this.api.patchConversation(id, { pinned });
      this.upsert(conv?.conversation || conv || { id, pinned });
    } catch (error) {
      this.handlers.notice(error.message);
    }
  }

  startRename(li, conv) {
    this.renamingId = conv.id;
    const input = document.createElement("input");
    input.type = "text";
    input.className = "rename-input";
    input.value = conv.title || "";
    input.maxLength = 200;
    input.setAttribute("aria-label", "Conversation title");
    const link = li.querySelector("a");
    link.hidden = true;
    li.querySelector(".conversation-actions").hidden = true;
    li.prepend(input);
    input.focus();
    input.select();
    let finished = false;
    const finish = async (save) => {
      if (finished) return;
      finished = true;
      this.renamingId = null;
      const title = input.value.trim();
      if (save && title && title !== conv.title) {
        try {
          const answer = await this.api.patchConversation(conv.id, { title });
          const updated = answer?.conversation || answer || { id: conv.id, title };
          this.upsert({ ...updated, id: conv.id, title: updated.title ?? title });
          this.handlers.renamed(this.get(conv.id));
        } catch (error) {
          this.handlers.notice(error.message);
          this.render();
        }
      } else {
        this.render();
      }
      this.listEl.querySelector(`li[data-id="${conv.id}"] [data-action="rename"]`)?.focus();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
  }

  confirmDelete(conv) {
    const dialog = this.dialog;
    dialog.querySelector("#delete-title").textContent = conv.title || "New conversation";
    dialog.returnValue = "";
    dialog.showModal();
    dialog.querySelector("button[value=cancel]").focus();
    dialog.addEventListener(
      "close",
      async () => {
        if (dialog.returnValue !== "delete") return;
        try {
          await this.api.deleteConversation(conv.id);
          this.remove(conv.id);
          this.handlers.deleted(conv.id);
        } catch (error) {
          this.handlers.notice(error.message);
        }
      },
      { once: true },
    );
  }
}

// Feather-style outline icons (no icon font, no emoji: not every system has them).
const ICONS = {
  pin: ["M12 2l3.09 6.26L22 9.27l-5 4.87 1.18 6.88L12 17.77l-6.18 3.25L7 14.14 2 9.27l6.91-1.01L12 2z"],
  pinned: ["M12 2l3.09 6.26L22 9.27l-5 4.87 1.18 6.88L12 17.77l-6.18 3.25L7 14.14 2 9.27l6.91-1.01L12 2z"],
  rename: ["M12 20h9", "M16.5 3.5a2.12 2.12 0 0 1 3 3L7 19l-4 1 1-4 12.5-12.5z"],
  delete: ["M3 6h18", "M8 6V4h8v2", "M19 6l-1 14H6L5 6", "M10 11v6", "M14 11v6"],
};

function svgIcon(paths) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "icon-svg");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const d of paths) {
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

function groupName(iso) {
  const when = iso ? new Date(iso) : new Date();
  const startOfToday = new Date();
  startOfToday.setHours(0, 0, 0, 0);
  const t = when.getTime();
  if (t >= startOfToday.getTime()) return "Today";
  if (t >= startOfToday.getTime() - DAY) return "Yesterday";
  if (t >= startOfToday.getTime() - 7 * DAY) return "Previous 7 days";
  return "Older";
}
