// VideoChat front end: plain ESM, no bundler (pyproject copies this file into the wheel).
//
// Everything shown here comes from the `turn_data` trait, which Python builds from relay output.
// Relay text is untrusted, so the DOM is built with createElement/textContent only (never
// innerHTML), and every URL goes through `safeUrl` before it reaches `src`/`href`, even though
// Python already checked it (defence in depth: a saved notebook's widget state can be edited).

/**
 * One turn as Python serialises it (kki_widgets.widget.turn_to_dict).
 * @typedef TurnState
 * @property {number} index
 * @property {string} prompt
 * @property {string} [sent_prompt]  the prompt as sent, with the words a relay profile added
 * @property {string[]} [warnings]   where the relay's echoed spec contradicts what was asked
 * @property {string} model
 * @property {string | null} orientation
 * @property {number | null} duration
 * @property {number | null} parent
 * @property {"queued" | "generating" | "completed" | "failed" | "cancelled"} status
 * @property {string} status_text
 * @property {number} progress
 * @property {string | null} task_id
 * @property {string | null} preview_url
 * @property {string | null} raw_url
 * @property {string | null} thumbnail_url
 * @property {string | null} video_url
 * @property {string | null} download_url
 * @property {string | null} local_url   copy next to the notebook, relative to it ("./kki_media/…")
 * @property {string | null} local_thumbnail_url
 * @property {string[]} [warnings]
 * @property {string | null} error
 * @property {boolean} cached
 * @property {number | null} created_at
 * @property {number | null} finished_at
 * @property {string[]} notices
 * @property {string} [cost_text]        estimate while running, charge after (words from Python)
 * @property {number | null} [take]      take number of a request sent several times (1-based)
 * @property {number | null} [takes]     how many takes that request has
 * @property {number | null} [take_group] index of take 1: the takes are drawn side by side
 * @property {boolean} [picked]
 */

/**
 * The synced traits (see VideoChat in kki_widgets/widget.py).
 * @typedef ModelState
 * @property {TurnState[]} turn_data
 * @property {string} model
 * @property {string[]} models
 * @property {string} orientation
 * @property {string[]} orientations
 * @property {number | null} duration
 * @property {number[]} durations
 * @property {boolean} simulated
 * @property {boolean} busy
 * @property {string} error
 * @property {string} title
 * @property {number | null} head   the turn the next prompt continues
 */

/**
 * The part of anywidget's AnyModel this file uses.
 * @typedef Model
 * @property {<K extends keyof ModelState>(key: K) => ModelState[K]} get
 * @property {<K extends keyof ModelState>(key: K, value: ModelState[K]) => void} set
 * @property {() => void} save_changes
 * @property {(name: string, cb: (...args: any[]) => void) => void} on
 * @property {(name?: string | null, cb?: ((...args: any[]) => void) | null) => void} off
 * @property {(content: any, callbacks?: any, buffers?: any[]) => void} send
 */

const RUNNING = new Set(["queued", "generating"]);
const ALLOWED_PROTOCOLS = new Set(["http:", "https:", "blob:"]);

/**
 * Return the URL if it may go into `src`/`href`, else null.
 * Allowed: http(s), blob:, and same-origin absolute paths such as `/files/...`.
 * Browsers drop tabs/newlines inside URLs ("java\nscript:" is javascript:), so the check runs on
 * the URL the browser would actually parse, not on the raw string.
 * @param {unknown} raw
 * @returns {string | null}
 */
export function safeUrl(raw) {
  if (typeof raw !== "string") return null;
  // eslint-disable-next-line no-control-regex
  const cleaned = raw.replace(/[\t\n\r]/g, "").replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, "");
  // eslint-disable-next-line no-control-regex
  if (!cleaned || /[\u0000-\u001f\u007f]/.test(cleaned)) return null;
  if (cleaned.startsWith("/")) {
    // "//host" and "/\host" are other-origin URLs in disguise.
    if (cleaned.startsWith("//") || cleaned.startsWith("/\\")) return null;
    return cleaned;
  }
  let url;
  try {
    url = new URL(cleaned);
  } catch {
    return null; // relative paths other than "/..." are not expected from Python
  }
  if (!ALLOWED_PROTOCOLS.has(url.protocol)) return null;
  return cleaned;
}

/**
 * A notebook-relative media path from Python ("./kki_media/clip.mp4"), or null.
 * Only "./" paths without ".." segments, backslashes or a scheme: they can only name files in
 * the notebook's own folder tree.
 * @param {unknown} raw
 * @returns {string | null}
 */
export function safeLocalPath(raw) {
  if (typeof raw !== "string" || !raw.startsWith("./")) return null;
  // eslint-disable-next-line no-control-regex
  if (/[\\\u0000-\u001f\u007f?#]/.test(raw) || raw.includes(":")) return null;
  if (raw.split("/").some((part) => part === ".." || part === "")) return null;
  return raw;
}

/** The server's base URL from the page's config (JupyterLab and Notebook 7), "/" otherwise. */
function pageBaseUrl() {
  try {
    const node = document.getElementById("jupyter-config-data");
    const base = node ? JSON.parse(node.textContent || "{}").baseUrl : null;
    if (typeof base === "string" && base.startsWith("/")) return base.endsWith("/") ? base : `${base}/`;
  } catch {
    // no page config: not a Jupyter page
  }
  return "/";
}

/**
 * The notebook's path on the server ("dir/nb.ipynb"), or null when unknown.
 * JupyterLab: the tab of the panel holding this widget says "Path: dir/nb.ipynb" (the page URL
 * names only the *active* document). Notebook 7 and a single JupyterLab tab: the page URL.
 * @param {HTMLElement} el
 * @returns {string | null}
 */
function notebookPath(el) {
  const panel = el.closest(".jp-NotebookPanel");
  if (panel && panel.id) {
    const tab = document.querySelector(`.lm-TabBar-tab[data-id="${CSS.escape(panel.id)}"]`);
    const match = tab && /(?:^|\n)Path: ([^\n]+)/.exec(tab.getAttribute("title") || "");
    if (match) return match[1].trim();
  }
  const base = pageBaseUrl();
  const path = decodeURIComponent(location.pathname);
  const rest = path.startsWith(base) ? path.slice(base.length) : path.replace(/^\//, "");
  const match = /^(?:(?:lab|doc)(?:\/workspaces\/[^/]+)?\/tree|notebooks)\/(.+\.ipynb)$/.exec(rest);
  return match ? match[1] : null;
}

/**
 * Where this page can load a file next to the notebook, or null.
 * - an exported HTML file (file://) or any page without a Jupyter server: the relative path,
 *   which the browser resolves against the page, i.e. next to the exported notebook;
 * - JupyterLab / Notebook 7: the server's /files/ route in the notebook's folder.
 * @param {string} local "./kki_media/clip.mp4"
 * @param {HTMLElement} el
 * @returns {string | null}
 */
export function resolveLocal(local, el) {
  const safe = safeLocalPath(local);
  if (!safe) return null;
  if (!document.getElementById("jupyter-config-data")) return safe;
  const notebook = notebookPath(el);
  if (notebook === null) return null;
  const folder = notebook.split("/").slice(0, -1).filter(Boolean).map(encodeURIComponent);
  return `${pageBaseUrl()}files/${[...folder, safe.slice(2)].join("/")}`;
}

/**
 * createElement with a class list and text; attributes are set one by one so nothing is parsed.
 * @param {string} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElement}
 */
function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * A link that opens in a new tab without handing the opener to the relay's page.
 * @param {string} className
 * @param {string} text
 * @returns {HTMLAnchorElement}
 */
function makeLink(className, text) {
  const a = /** @type {HTMLAnchorElement} */ (h("a", className, text));
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
}

/**
 * Point a link at a URL, or hide it when the URL is missing or unsafe.
 * @param {HTMLAnchorElement} a
 * @param {string | null | undefined} url
 * @returns {boolean} whether an unsafe (not merely missing) URL was dropped
 */
function setHref(a, url) {
  const safe = safeUrl(url);
  if (safe) {
    if (a.getAttribute("href") !== safe) a.setAttribute("href", safe);
    a.hidden = false;
    return false;
  }
  a.removeAttribute("href");
  a.hidden = true;
  return Boolean(url);
}

/**
 * Set (or clear) a media attribute only when it changes: reassigning `src` restarts playback.
 * @param {HTMLElement} node
 * @param {"src" | "poster"} attr
 * @param {string | null} value
 */
function setMediaAttr(node, attr, value) {
  if (value) {
    if (node.getAttribute(attr) !== value) node.setAttribute(attr, value);
  } else if (node.hasAttribute(attr)) {
    node.removeAttribute(attr);
  }
}

/** @param {number} seconds */
function formatElapsed(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const m = Math.floor(s / 60);
  return m ? `${m} min ${String(s % 60).padStart(2, "0")} s` : `${s} s`;
}

/** @param {TurnState} turn */
function turnKey(turn) {
  return `${turn.index}:${turn.created_at ?? ""}`;
}

/** Candidate URLs for one medium: the current one, and a blob: URL once bytes arrived. */
class MediaSources {
  constructor() {
    /** @type {string[]} */
    this.list = [];
    this.position = 0;
    /** @type {string | null} */
    this.blob = null;
    this.asked = false;
  }

  /** @param {string[]} list  restarts from the first candidate only when the list changed */
  set(list) {
    if (list.length === this.list.length && list.every((u, i) => u === this.list[i])) return;
    this.list = list;
    this.position = 0;
    this.asked = false;
  }

  advance() {
    // The last candidate stays the source when it fails too: a broken player with its link is
    // more honest than an empty box (and the kernel's bytes, if they come, replace it).
    if (this.position + 1 >= this.list.length) return false;
    this.position += 1;
    return true;
  }

  current() {
    return this.blob ?? this.list[this.position] ?? null;
  }

  /** @param {string | null} url */
  setBlob(url) {
    if (this.blob) URL.revokeObjectURL(this.blob);
    this.blob = url;
  }
}

/**
 * The DOM of one turn, updated in place so a playing video is not reset by progress updates of
 * other turns.
 */
class TurnView {
  /**
   * @param {(msg: Record<string, unknown>) => void} send
   * @param {(turn: TurnState) => void} onRemix
   * @param {(local: string) => string | null} resolve  a notebook-relative path to a URL here
   */
  constructor(send, onRemix, resolve) {
    this.send = send;
    this.resolve = resolve;
    /** Candidate URLs per medium, tried in order; `error` moves to the next one. */
    this.sources = { video: new MediaSources(), thumbnail: new MediaSources() };
    this.maxProgress = 0;
    /** @type {TurnState | null} */
    this.turn = null;

    this.root = h("li", "kki-turn");
    const head = h("div", "kki-turn-head");
    this.num = h("span", "kki-turn-num");
    this.prompt = h("div", "kki-prompt");
    this.branch = h("span", "kki-branch");
    head.append(this.num, this.prompt, this.branch);
    // The words a relay profile appended (e.g. "(landscape 16:9, …)") are part of what was paid for.
    this.sent = h("div", "kki-sent");

    const meta = h("div", "kki-turn-meta");
    this.status = h("span", "kki-status");
    this.status.setAttribute("role", "status");
    this.opts = h("span", "kki-opts");
    this.elapsed = h("span", "kki-elapsed");
    this.cached = h("span", "kki-tag kki-cached", "from cache");
    this.cost = h("span", "kki-cost");
    this.takeTag = h("span", "kki-tag kki-take");
    meta.append(this.status, this.opts, this.elapsed, this.cached, this.cost, this.takeTag);

    this.bar = h("div", "kki-progress");
    this.bar.setAttribute("role", "progressbar");
    this.bar.setAttribute("aria-valuemin", "0");
    this.bar.setAttribute("aria-valuemax", "100");
    this.fill = h("div", "kki-progress-fill");
    this.bar.append(this.fill);

    const links = h("div", "kki-links");
    this.taskLabel = h("span", "kki-task-label", "Task");
    this.taskId = h("code", "kki-task-id");
    this.preview = makeLink("kki-link kki-preview", "Preview");
    this.raw = makeLink("kki-link kki-raw", "Raw data");
    links.append(this.taskLabel, this.taskId, this.preview, this.raw);
    this.links = links;

    this.media = h("div", "kki-media");
    this.thumb = /** @type {HTMLImageElement} */ (h("img", "kki-thumb"));
    this.thumb.alt = "thumbnail";
    this.thumb.decoding = "async";
    this.video = /** @type {HTMLVideoElement} */ (h("video", "kki-video"));
    this.video.controls = true;
    this.video.playsInline = true;
    this.video.preload = "metadata";
    this.media.append(this.thumb, this.video);

    this.notices = h("ul", "kki-notices");
    // The relay made something else than asked (its spec says so): visible, never innerHTML.
    this.warnings = h("ul", "kki-warnings");
    this.warnings.setAttribute("role", "status");
    this.error = h("div", "kki-turn-error");
    this.error.setAttribute("role", "alert");

    const actions = h("div", "kki-actions");
    this.cancelBtn = /** @type {HTMLButtonElement} */ (h("button", "kki-btn kki-cancel", "Cancel"));
    this.retryBtn = /** @type {HTMLButtonElement} */ (h("button", "kki-btn kki-retry", "Retry"));
    this.remixBtn = /** @type {HTMLButtonElement} */ (
      h("button", "kki-btn kki-remix", "Remix from here")
    );
    this.download = makeLink("kki-link kki-download", "Download");
    this.download.setAttribute("download", "");
    this.pickBtn = /** @type {HTMLButtonElement} */ (h("button", "kki-btn kki-pick", "Pick this take"));
    for (const b of [this.cancelBtn, this.retryBtn, this.remixBtn, this.pickBtn]) b.type = "button";
    actions.append(this.pickBtn, this.cancelBtn, this.retryBtn, this.remixBtn, this.download);
    this.pickBtn.addEventListener("click", () => {
      if (!this.turn) return;
      this.pickBtn.disabled = true;
      this.send({ type: "pick", index: this.turn.index });
    });

    this.cancelBtn.addEventListener("click", () => {
      if (!this.turn) return;
      this.cancelBtn.disabled = true; // re-enabled by the next state if the cancel failed
      this.send({ type: "cancel", index: this.turn.index });
    });
    this.retryBtn.addEventListener("click", () => {
      if (!this.turn) return;
      this.retryBtn.disabled = true;
      this.send({ type: "retry", index: this.turn.index });
    });
    this.remixBtn.addEventListener("click", () => {
      if (this.turn) onRemix(this.turn);
    });
    // A source that does not load (the kernel's relay is gone, the folder is not served) gives
    // way to the next candidate; the last resort asks the kernel for the bytes.
    this.video.addEventListener("error", () => this.nextSource("video"));
    this.thumb.addEventListener("error", () => this.nextSource("thumbnail"));

    this.root.append(
      head, this.sent, meta, this.bar, links, this.media, this.warnings, this.notices, this.error, actions
    );
  }

  /**
   * @param {TurnState} turn
   * @param {number | null} [head] the turn the next prompt continues
   */
  update(turn, head = null) {
    this.turn = turn;
    const running = RUNNING.has(turn.status);
    this.root.dataset.index = String(turn.index);
    this.root.dataset.status = turn.status;

    this.num.textContent = `#${turn.index + 1}`;
    this.prompt.textContent = turn.prompt ?? "";
    const sent = typeof turn.sent_prompt === "string" ? turn.sent_prompt : "";
    this.sent.textContent = sent && sent !== turn.prompt ? `sent as: ${sent}` : "";
    this.sent.hidden = !this.sent.textContent;
    const isBranch = turn.parent !== null && turn.parent !== undefined && turn.parent !== turn.index - 1;
    this.branch.textContent = isBranch ? `remix of #${Number(turn.parent) + 1}` : "";
    this.branch.hidden = !isBranch;

    // The words come from Python (transcript.STATUS_WORDS, sent as status_text with every turn).
    this.status.textContent = turn.status_text || String(turn.status);
    this.opts.textContent = [
      turn.model,
      turn.orientation,
      turn.duration ? `${turn.duration} s` : null,
    ]
      .filter(Boolean)
      .join(" · ");
    this.cached.hidden = !turn.cached;
    this.updateElapsed();

    // The bar only moves forward, even if a late or replayed state says otherwise.
    const reported = turn.status === "completed" ? 100 : Number(turn.progress) || 0;
    this.maxProgress = Math.min(100, Math.max(this.maxProgress, reported));
    const p = Math.round(this.maxProgress);
    this.bar.dataset.progress = String(p);
    this.bar.setAttribute("aria-valuenow", String(p));
    this.bar.setAttribute("aria-valuetext", `${p}%`);
    this.fill.style.width = `${p}%`;
    this.bar.hidden = turn.status === "failed" && p === 0;

    /** @type {string[]} */
    const notices = Array.isArray(turn.notices) ? turn.notices.map(String) : [];
    this.taskId.textContent = turn.task_id ?? "";
    this.links.hidden = !turn.task_id && !turn.preview_url && !turn.raw_url;
    this.taskLabel.hidden = !turn.task_id;
    if (setHref(this.preview, turn.preview_url)) notices.push("Unsafe link removed (preview).");
    if (setHref(this.raw, turn.raw_url)) notices.push("Unsafe link removed (raw data).");

    if (turn.thumbnail_url && !safeUrl(turn.thumbnail_url)) notices.push("Unsafe link removed (thumbnail).");
    if (turn.video_url && !safeUrl(turn.video_url)) notices.push("Unsafe link removed (video).");
    const completed = turn.status === "completed";
    this.sources.video.set(completed ? this.candidates(turn.local_url, turn.video_url) : []);
    this.sources.thumbnail.set(this.candidates(turn.local_thumbnail_url, turn.thumbnail_url));
    this.showMedia();

    const local = completed ? this.candidates(turn.local_url, null)[0] : null;
    const download = local ?? turn.download_url ?? turn.video_url;
    const dropped = setHref(this.download, turn.status === "completed" ? download : null);
    if (dropped && download !== turn.video_url) notices.push("Unsafe link removed (download).");

    // Python words its notices the same way; show each once.
    const unique = [...new Set(notices)];
    this.notices.replaceChildren(...unique.map((text) => h("li", "kki-notice", text)));
    this.notices.hidden = unique.length === 0;

    const warnings = Array.isArray(turn.warnings) ? turn.warnings.map(String) : [];
    this.warnings.replaceChildren(...warnings.map((text) => h("li", "kki-warning", `⚠ ${text}`)));
    this.warnings.hidden = warnings.length === 0;

    this.error.textContent = turn.error ?? "";
    this.error.hidden = !turn.error;

    this.cancelBtn.hidden = !running;
    if (running) this.cancelBtn.disabled = false;
    const retryable = turn.status === "failed" || turn.status === "cancelled";
    this.retryBtn.hidden = !retryable;
    if (retryable) this.retryBtn.disabled = false;
    this.remixBtn.hidden = turn.status !== "completed";
    this.updateTake(turn, head);
  }

  /**
   * Price words and, for one of several takes, which take it is and whether it is the one the
   * next prompt continues.
   * @param {TurnState} turn
   * @param {number | null} head
   */
  updateTake(turn, head) {
    this.cost.textContent = turn.cost_text ?? "";
    this.cost.hidden = !turn.cost_text;
    const isTake = typeof turn.take === "number" && turn.take > 0;
    const current = isTake && head === turn.index;
    this.takeTag.textContent = isTake ? `take ${turn.take}/${turn.takes ?? "?"}` : "";
    this.takeTag.hidden = !isTake;
    this.root.dataset.take = isTake ? String(turn.take) : "";
    this.root.dataset.current = current ? "true" : "false";
    this.pickBtn.hidden = !isTake || turn.status !== "completed";
    this.pickBtn.disabled = current;
    this.pickBtn.textContent = current ? "Picked: the next prompt continues this take" : "Pick this take";
  }

  /**
   * The copy next to the notebook first (it outlives the relay's links and the kernel), then the
   * relay's URL.
   * @param {string | null | undefined} local
   * @param {string | null | undefined} remote
   * @returns {string[]}
   */
  candidates(local, remote) {
    const list = [];
    const resolved = local ? this.resolve(local) : null;
    if (resolved) list.push(resolved);
    const url = safeUrl(remote);
    if (url && !list.includes(url)) list.push(url);
    return list;
  }

  /** @param {"video" | "thumbnail"} kind */
  nextSource(kind) {
    const sources = this.sources[kind];
    if (sources.blob) return; // the kernel's own bytes failed to play: nothing left to try
    if (sources.advance()) {
      this.showMedia();
    } else if (this.turn && !sources.asked && (kind === "thumbnail" || this.turn.status === "completed")) {
      sources.asked = true;
      this.send({ type: "media", index: this.turn.index, kind });
    }
  }

  /**
   * The kernel sent the file itself (no URL worked here).
   * @param {"video" | "thumbnail"} kind
   * @param {ArrayBuffer | DataView} bytes
   * @param {string} mime
   */
  setBytes(kind, bytes, mime) {
    const sources = this.sources[kind];
    sources.setBlob(URL.createObjectURL(new Blob([bytes], { type: mime })));
    this.showMedia();
  }

  showMedia() {
    const video = this.sources.video.current();
    const poster = this.sources.thumbnail.current();
    setMediaAttr(this.video, "poster", poster);
    setMediaAttr(this.video, "src", video);
    this.video.hidden = !video;
    // Before the video exists the thumbnail (if any) stands in for it.
    setMediaAttr(this.thumb, "src", video ? null : poster);
    this.thumb.hidden = Boolean(video) || !poster;
    this.media.hidden = !video && !poster;
  }

  dispose() {
    this.video.pause();
    this.sources.video.setBlob(null);
    this.sources.thumbnail.setBlob(null);
  }

  updateElapsed() {
    const turn = this.turn;
    if (!turn || !turn.created_at) {
      this.elapsed.textContent = "";
      return;
    }
    const end = turn.finished_at ?? (RUNNING.has(turn.status) ? Date.now() / 1000 : null);
    this.elapsed.textContent = end ? formatElapsed(end - turn.created_at) : "";
  }
}

/**
 * The takes of one request side by side. Playing, pausing or seeking one video does the same to
 * the others, so takes are compared on the same frame.
 */
class TakesRow {
  constructor() {
    this.root = h("li", "kki-takes");
    this.row = h("ol", "kki-takes-row");
    this.root.append(this.row);
    this.syncing = false;
    /** @param {Event} event */
    this.onMedia = (event) => {
      const source = event.target;
      if (this.syncing || !(source instanceof HTMLVideoElement)) return;
      this.syncing = true; // the mirrored calls below must not mirror back
      try {
        for (const video of this.row.querySelectorAll("video.kki-video")) {
          if (video === source || !(video instanceof HTMLVideoElement) || video.hidden || !video.src) continue;
          if (Math.abs(video.currentTime - source.currentTime) > 0.25) video.currentTime = source.currentTime;
          if (event.type === "play" && video.paused) video.play().catch(() => {});
          if (event.type === "pause" && !video.paused) video.pause();
        }
      } finally {
        this.syncing = false;
      }
    };
    // Media events do not bubble: listen in the capture phase.
    for (const type of TakesRow.EVENTS) this.row.addEventListener(type, this.onMedia, true);
  }

  /** @param {HTMLElement[]} nodes */
  setTakes(nodes) {
    const same = nodes.length === this.row.children.length && nodes.every((n, i) => this.row.children[i] === n);
    if (!same) this.row.replaceChildren(...nodes);
  }

  destroy() {
    for (const type of TakesRow.EVENTS) this.row.removeEventListener(type, this.onMedia, true);
  }
}
TakesRow.EVENTS = ["play", "pause", "seeked"];

/**
 * @param {string[]} values
 * @param {(v: string) => string} label
 * @returns {HTMLOptionElement[]}
 */
function options(values, label = (v) => v) {
  return values.map((v) => {
    const o = /** @type {HTMLOptionElement} */ (h("option", undefined, label(v)));
    o.value = v;
    return o;
  });
}

/** @type {import("anywidget/types").Render<ModelState>} */
function render({ model, el }) {
  const m = /** @type {Model} */ (/** @type {unknown} */ (model));
  let nextId = 0;
  /** @type {Map<string, string>} request id -> prompt, to give the prompt back if a send fails */
  const pending = new Map();
  /** @type {number | null} */
  let remixFrom = null;

  /** @param {Record<string, unknown>} msg */
  const send = (msg) => {
    const id = `v${Date.now().toString(36)}-${nextId++}`;
    m.send({ ...msg, id });
    return id;
  };

  const root = h("div", "kki-chat");
  const header = h("div", "kki-header");
  const title = h("span", "kki-title");
  const badge = h("span", "kki-badge kki-badge-sim", "Simulated relay");
  badge.title = "No API key is set: answers come from the embedded simulator, not a real model.";
  const busy = h("span", "kki-busy", "working…");
  header.append(title, badge, busy);

  const errorBox = h("div", "kki-error");
  errorBox.setAttribute("role", "alert");
  const errorText = h("span", "kki-error-text");
  const errorClose = /** @type {HTMLButtonElement} */ (h("button", "kki-btn kki-error-close", "Dismiss"));
  errorClose.type = "button";
  errorBox.append(errorText, errorClose);

  const list = h("ol", "kki-turns");
  const empty = h("div", "kki-empty", "Describe a video and press Enter. Follow-up prompts remix the previous video.");

  const composer = h("div", "kki-composer");
  const remixChip = h("div", "kki-remix-chip");
  const remixText = h("span", "kki-remix-text");
  const remixClear = /** @type {HTMLButtonElement} */ (h("button", "kki-btn kki-remix-clear", "×"));
  remixClear.type = "button";
  remixClear.title = "Continue from the latest turn instead";
  remixChip.append(remixText, remixClear);

  const input = /** @type {HTMLTextAreaElement} */ (h("textarea", "kki-input"));
  input.rows = 2;
  input.placeholder = "Describe the video… (Enter sends, Shift+Enter adds a line)";
  input.setAttribute("aria-label", "Prompt");

  const controls = h("div", "kki-controls");
  const modelSel = /** @type {HTMLSelectElement} */ (h("select", "kki-select kki-model"));
  modelSel.setAttribute("aria-label", "Model");
  const orientSel = /** @type {HTMLSelectElement} */ (h("select", "kki-select kki-orientation"));
  orientSel.setAttribute("aria-label", "Orientation");
  const durSel = /** @type {HTMLSelectElement} */ (h("select", "kki-select kki-duration"));
  durSel.setAttribute("aria-label", "Duration");
  const takesSel = /** @type {HTMLSelectElement} */ (h("select", "kki-select kki-takes-select"));
  takesSel.setAttribute("aria-label", "Takes");
  takesSel.replaceChildren(...options(["1", "2", "3", "4"], (v) => (v === "1" ? "1 take" : `${v} takes`)));
  const sendBtn = /** @type {HTMLButtonElement} */ (h("button", "kki-btn kki-primary kki-send", "Send"));
  sendBtn.type = "button";
  controls.append(modelSel, orientSel, durSel, takesSel, sendBtn);
  composer.append(remixChip, input, controls);

  root.append(header, errorBox, list, empty, composer);
  el.replaceChildren(root);

  /** @type {Map<string, TurnView>} */
  const views = new Map();
  /** @type {Map<string, TakesRow>} take_group -> its row */
  const rows = new Map();

  const renderTurns = () => {
    const turns = m.get("turn_data") ?? [];
    const head = m.get("head") ?? null;
    /** @type {HTMLElement[]} */
    const nodes = [];
    const seen = new Set();
    /** @type {Map<string, HTMLElement[]>} */
    const grouped = new Map();
    for (const turn of turns) {
      const key = turnKey(turn);
      seen.add(key);
      let view = views.get(key);
      if (!view) {
        view = new TurnView(
          send,
          (parent) => {
            remixFrom = parent.index;
            // A remix continues its parent's settings: the pickers show them (and can change them).
            if (parent.model) m.set("model", parent.model);
            if (parent.orientation) m.set("orientation", parent.orientation);
            m.set("duration", parent.duration ?? null);
            m.save_changes();
            renderComposer();
            input.focus();
          },
          (local) => resolveLocal(local, el),
        );
        views.set(key, view);
      }
      view.update(turn, head);
      const group = typeof turn.take_group === "number" && (turn.takes ?? 0) > 1 ? `g${turn.take_group}` : null;
      if (group === null) {
        nodes.push(view.root);
        continue;
      }
      let row = rows.get(group);
      if (!row) {
        row = new TakesRow();
        rows.set(group, row);
      }
      if (!grouped.has(group)) {
        grouped.set(group, []);
        nodes.push(row.root); // the row stands where its first take would
      }
      grouped.get(group)?.push(view.root);
    }
    for (const [group, row] of rows) {
      const members = grouped.get(group);
      if (members) row.setTakes(members);
      else {
        row.destroy();
        rows.delete(group);
      }
    }
    for (const [key, view] of [...views.entries()]) {
      if (!seen.has(key)) {
        view.dispose();
        views.delete(key);
      }
    }
    // replaceChildren moves existing nodes (a playing <video> keeps playing when it stays).
    const same = nodes.length === list.children.length && nodes.every((n, i) => list.children[i] === n);
    if (!same) list.replaceChildren(...nodes);
    empty.hidden = turns.length > 0;
    if (remixFrom !== null && !turns.some((t) => t.index === remixFrom)) remixFrom = null;
    renderComposer();
  };

  const renderHeader = () => {
    title.textContent = m.get("title") || "Video chat";
    badge.hidden = !m.get("simulated");
    busy.hidden = !m.get("busy");
    const err = m.get("error");
    errorText.textContent = err || "";
    errorBox.hidden = !err;
  };

  /**
   * @param {HTMLSelectElement} sel
   * @param {string[]} values
   * @param {string} current
   * @param {(v: string) => string} [label]
   */
  const fillSelect = (sel, values, current, label) => {
    const all = values.includes(current) || !current ? values : [current, ...values];
    const sameOptions =
      sel.options.length === all.length && all.every((v, i) => sel.options[i].value === v);
    if (!sameOptions) sel.replaceChildren(...options(all, label));
    sel.value = current;
  };

  const renderControls = () => {
    fillSelect(modelSel, (m.get("models") ?? []).map(String), String(m.get("model") ?? ""));
    fillSelect(orientSel, (m.get("orientations") ?? []).map(String), String(m.get("orientation") ?? ""));
    const d = m.get("duration");
    fillSelect(
      durSel,
      ["", ...(m.get("durations") ?? []).map(String)],
      d === null || d === undefined ? "" : String(d),
      (v) => (v ? `${v} s` : "default length"),
    );
  };

  const renderComposer = () => {
    remixChip.hidden = remixFrom === null;
    remixText.textContent = remixFrom === null ? "" : `Remixing from #${remixFrom + 1}`;
    sendBtn.disabled = input.value.trim() === "";
  };

  const submit = () => {
    const prompt = input.value.trim();
    if (!prompt) return;
    const d = durSel.value;
    const id = send({
      type: remixFrom === null ? "send" : "remix",
      prompt,
      model: modelSel.value,
      orientation: orientSel.value || null,
      duration: d ? Number(d) : null,
      takes: Number(takesSel.value) > 1 ? Number(takesSel.value) : null,
      index: remixFrom,
    });
    pending.set(id, input.value);
    input.value = "";
    remixFrom = null;
    renderComposer();
  };

  /** @param {KeyboardEvent} event */
  const onKey = (event) => {
    // isComposing: Enter that confirms an IME candidate must not send.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  };
  // Stop JupyterLab's notebook shortcuts (e.g. "a", "b", Shift+Enter) from acting on the cell while
  // the user types in the widget.
  /** @param {KeyboardEvent} event */
  const stopKeys = (event) => event.stopPropagation();

  const onInput = () => renderComposer();
  const onSendClick = () => submit();
  const onModel = () => {
    m.set("model", modelSel.value);
    m.save_changes();
  };
  const onOrient = () => {
    m.set("orientation", orientSel.value);
    m.save_changes();
  };
  const onDur = () => {
    m.set("duration", durSel.value ? Number(durSel.value) : null);
    m.save_changes();
  };
  const onErrorClose = () => {
    m.set("error", "");
    m.save_changes();
  };
  const onRemixClear = () => {
    remixFrom = null;
    renderComposer();
  };

  /**
   * @param {any} msg
   * @param {(ArrayBuffer | DataView)[]} [buffers]
   */
  const onCustom = (msg, buffers) => {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "media" && buffers && buffers.length && (msg.kind === "video" || msg.kind === "thumbnail")) {
      const mime = msg.kind === "video" ? "video/mp4" : "image/webp";
      for (const view of views.values()) {
        if (view.turn && view.turn.index === msg.index) view.setBytes(msg.kind, buffers[0], mime);
      }
      return;
    }
    if (msg.type === "error") {
      errorText.textContent = String(msg.error ?? "Something went wrong.");
      errorBox.hidden = false;
      const prompt = pending.get(msg.id);
      // Give the prompt back so a failed send does not lose what the user typed.
      if (prompt !== undefined && input.value === "") {
        input.value = prompt;
        renderComposer();
      }
    }
    if (msg.id !== undefined) pending.delete(msg.id);
  };

  input.addEventListener("keydown", onKey);
  root.addEventListener("keydown", stopKeys);
  input.addEventListener("input", onInput);
  sendBtn.addEventListener("click", onSendClick);
  modelSel.addEventListener("change", onModel);
  orientSel.addEventListener("change", onOrient);
  durSel.addEventListener("change", onDur);
  errorClose.addEventListener("click", onErrorClose);
  remixClear.addEventListener("click", onRemixClear);

  m.on("change:turn_data", renderTurns);
  m.on("change:head", renderTurns);
  const onHeader = () => renderHeader();
  for (const name of ["title", "simulated", "busy", "error"]) m.on(`change:${name}`, onHeader);
  const onControls = () => renderControls();
  for (const name of ["model", "models", "orientation", "orientations", "duration", "durations"]) {
    m.on(`change:${name}`, onControls);
  }
  m.on("msg:custom", onCustom);

  // Elapsed time of running turns ticks once a second without any kernel traffic.
  const timer = setInterval(() => {
    for (const view of views.values()) {
      if (view.turn && RUNNING.has(view.turn.status)) view.updateElapsed();
    }
  }, 1000);

  renderHeader();
  renderControls();
  renderTurns();

  return () => {
    clearInterval(timer);
    m.off("change:turn_data", renderTurns);
    m.off("change:head", renderTurns);
    for (const row of rows.values()) row.destroy();
    rows.clear();
    for (const name of ["title", "simulated", "busy", "error"]) m.off(`change:${name}`, onHeader);
    for (const name of ["model", "models", "orientation", "orientations", "duration", "durations"]) {
      m.off(`change:${name}`, onControls);
    }
    m.off("msg:custom", onCustom);
    // Stop downloading/playing media of a view that is gone.
    for (const view of views.values()) view.dispose();
    views.clear();
  };
}

export default { render };
