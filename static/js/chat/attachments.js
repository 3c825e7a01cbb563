// Images attached to the next message: checked in the browser (type, size, count) with a
// plain-words reason, read as data: URLs for the `send` frame, previewed as thumbnails.

export const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
export const MAX_IMAGE_BYTES = 5 * 1024 * 1024;
export const MAX_IMAGES = 4;

export class Attachments {
  /**
   * @param {HTMLElement} list  where thumbnails go
   * @param {(message: string) => void} onProblem
   */
  constructor(list, onProblem) {
    this.list = list;
    this.onProblem = onProblem;
    this.items = []; // {id, name, dataUrl}
    this.nextId = 1;
  }

  get count() {
    return this.items.length;
  }

  dataUrls() {
    return this.items.map((item) => item.dataUrl);
  }

  clear() {
    this.items = [];
    this.render();
  }

  /** Check and add files; returns a promise that settles when all are read. */
  async add(files) {
    const problems = [];
    for (const file of files) {
      if (!IMAGE_TYPES.includes(file.type)) {
        problems.push(`${file.name || "That file"} is not a PNG, JPEG, GIF or WebP image.`);
        continue;
      }
      if (file.size > MAX_IMAGE_BYTES) {
        problems.push(`${file.name || "That image"} is ${(Math.ceil((file.size / 1048576) * 10) / 10).toFixed(1)} MB; the limit is 5 MB per image.`);
        continue;
      }
      if (this.items.length >= MAX_IMAGES) {
        problems.push(`A message can carry at most ${MAX_IMAGES} images.`);
        break;
      }
      const item = { id: this.nextId++, name: file.name || "pasted image", dataUrl: null };
      this.items.push(item);
      try {
        item.dataUrl = await readAsDataUrl(file);
      } catch {
        this.items = this.items.filter((other) => other !== item);
        problems.push(`${item.name} could not be read.`);
      }
    }
    this.render();
    if (problems.length) this.onProblem(problems.join(" "));
  }

  render() {
    this.list.replaceChildren();
    this.list.hidden = this.items.length === 0;
    for (const item of this.items) {
      if (!item.dataUrl) continue;
      const li = document.createElement("li");
      const img = document.createElement("img");
      img.src = item.dataUrl;
      img.alt = item.name;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove-attachment";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Remove ${item.name}`);
      remove.addEventListener("click", () => {
        this.items = this.items.filter((other) => other !== item);
        this.render();
      });
      li.append(img, remove);
      this.list.append(li);
    }
  }
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}
