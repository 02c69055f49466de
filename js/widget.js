// VideoChat front end: plain ESM, no bundler (pyproject copies this file into the wheel).
//
// Everything shown here comes from the model's traits, which Python builds from relay output.
// Relay text is untrusted, so the DOM is built with createElement/textContent only (never
// innerHTML), and every URL goes through `safeUrl` before it reaches `src`/`href`, even though
// Python already checked it (defence in depth: a saved notebook's widget state can be edited).
// Words (status words, prices) come from Python; this file shows them, it never re-types them.
//
// One file on purpose: anywidget sends `_esm`'s text in the model state and imports it from a
// blob: URL (the same text is what a saved notebook or an HTML export carries), and a module
// loaded from a blob: URL cannot import its neighbours by relative path. The sections follow the
// template's layout instead:
//   1. types              4. one turn: MediaSources, TurnView     7. the composer: Composer
//   2. URL checks         5. takes side by side: TakesRow         8. the kernel: Channel
//   3. DOM helpers        6. the header and list: Header, TurnList 9. the widget: initialize/render

// ---------------------------------------------------------------------------- 1. types

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
 * @property {"queued" | "generating" | "completed" | "failed" | "cancelled" | "still_running"} status
 * @property {string} status_text    the status in words (transcript.STATUS_WORDS)
 * @property {boolean} [running]     queued or generating (transcript.RUNNING)
 * @property {number} progress
 * @property {string | null} task_id
 * @property {string | null} preview_url
 * @property {string | null} raw_url
 * @property {string | null} thumbnail_url
 * @property {string | null} video_url
 * @property {string | null} download_url
 * @property {string | null} local_url   copy next to the notebook, relative to it ("./kki_media/…")
 * @property {string | null} local_thumbnail_url
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
 * @property {string} [note]            how it was made when not the usual remix (a claim picked up)
 * @property {boolean} [resumable]       Resume follows its task again (no new request, no new charge)
 * @property {string} [resume_note]      why a turn still being made at the relay cannot be resumed
 * @property {string} [continue_text]   the continue button's words: a remix, or from the last frame
 * @property {string} [continuing_text] the composer's chip once that button was pressed
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
 * @property {number} takes          the takes picker (Python prices the next send with it)
 * @property {string} price_text     what the next send would cost, and the budget left (words)
 * @property {boolean} simulated
 * @property {boolean} busy
 * @property {string} error
 * @property {string} title
 * @property {number | null} head   the turn the next prompt continues
 * @property {{ name: string, label: string }[]} offers  the relay's video models (discovery)
 * @property {string} relay_badge    the profile in use, on the badge
 * @property {string} relay_text     why that profile (the badge's tooltip)
 * @property {boolean} needs_key     a relay without a key: the password field shows
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

/**
 * The kernel's answer to one request (VideoChat._on_custom answers each request once).
 * @typedef Reply
 * @property {{ type: "ok" | "error" | "media", id: string, error?: string, kind?: string, mime?: string }} msg
 * @property {(ArrayBuffer | DataView)[]} buffers
 */

/** @typedef {(msg: Record<string, unknown>) => Promise<Reply>} Request */

// ---------------------------------------------------------------------------- 2. URL checks

const ALLOWED_PROTOCOLS = new Set(["http:", "https:", "blob:"]);

/**
 * Return the URL if it may go into `src`/`href`, else null.
 * Allowed: http(s), blob:, same-origin absolute paths such as `/files/...`, and the widget's own
 * notebook-relative paths ("./kki_media/clip.mp4", see `safeLocalPath`).
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
  if (safeLocalPath(cleaned)) return cleaned;
  if (cleaned.startsWith("/")) {
    // "//host" and "/\host" are other-origin URLs in disguise.
    if (cleaned.startsWith("//") || cleaned.startsWith("/\\")) return null;
    return cleaned;
  }
  let url;
  try {
    url = new URL(cleaned);
  } catch {
    return null; // relative paths other than "./" and "/..." are not expected from Python
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

/**
 * The page's Jupyter config (JupyterLab, Notebook 7 and Voila write one), or null elsewhere
 * (an exported HTML file, marimo).
 * @returns {Record<string, unknown> | null}
 */
function pageConfig() {
  try {
    const node = document.getElementById("jupyter-config-data");
    const config = node ? JSON.parse(node.textContent || "{}") : null;
    return config && typeof config === "object" ? config : null;
  } catch {
    return null; // not a Jupyter page
  }
}

/** The server's base URL from the page's config, "/" otherwise. */
function pageBaseUrl() {
  const base = pageConfig()?.baseUrl;
  if (typeof base === "string" && base.startsWith("/")) return base.endsWith("/") ? base : `${base}/`;
  return "/";
}

/** The page's path under the server's base URL, decoded ("lab/tree/dir/nb.ipynb"). */
function pagePath() {
  const base = pageBaseUrl();
  const path = decodeURIComponent(location.pathname);
  return path.startsWith(base) ? path.slice(base.length) : path.replace(/^\//, "");
}

/**
 * Voila: the notebook's folder under the server's root, as path segments. Its tree mode renders
 * /voila/render/<dir>/<nb>.ipynb; `voila nb.ipynb` serves one notebook, whose folder is the root.
 * @returns {string[]}
 */
function voilaFolder() {
  const match = /^voila\/render\/(.+\.ipynb)$/.exec(pagePath());
  return match ? match[1].split("/").slice(0, -1).filter(Boolean) : [];
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
  const match = /^(?:(?:lab|doc)(?:\/workspaces\/[^/]+)?\/tree|notebooks)\/(.+\.ipynb)$/.exec(pagePath());
  return match ? match[1] : null;
}

/**
 * Where this page can load a file next to the notebook, or null (then the kernel sends it).
 * - a page without a Jupyter server (an exported HTML file, marimo): the relative path, which the
 *   browser resolves against the page, i.e. next to an exported notebook (marimo answers 404 and
 *   the kernel's bytes take over);
 * - Voila: its /voila/files/ route, which serves kki_media only when VoilaConfiguration.
 *   file_allowlist lets it (README, `make voila`);
 * - JupyterLab / Notebook 7: the server's /files/ route in the notebook's folder.
 * @param {string} local "./kki_media/clip.mp4"
 * @param {HTMLElement} el
 * @returns {string | null}
 */
export function resolveLocal(local, el) {
  const safe = safeLocalPath(local);
  if (!safe) return null;
  const config = pageConfig();
  if (!config) return safe;
  let route = "files/";
  let folder = voilaFolder();
  if (config.appUrl === "voila/") {
    route = "voila/files/";
  } else {
    const notebook = notebookPath(el);
    if (notebook === null) return null;
    folder = notebook.split("/").slice(0, -1).filter(Boolean);
  }
  return `${pageBaseUrl()}${route}${[...folder.map(encodeURIComponent), safe.slice(2)].join("/")}`;
}

// ---------------------------------------------------------------------------- 3. DOM helpers

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

/**
 * A button that never submits a surrounding form.
 * @param {string} className
 * @param {string} text
 * @returns {HTMLButtonElement}
 */
function button(className, text) {
  const b = /** @type {HTMLButtonElement} */ (h("button", `kki-btn ${className}`, text));
  b.type = "button";
  return b;
}

/**
 * A labelled picker (its options are filled by `fillSelect`).
 * @param {string} className
 * @param {string} label
 * @returns {HTMLSelectElement}
 */
function picker(className, label) {
  const sel = /** @type {HTMLSelectElement} */ (h("select", `kki-select ${className}`));
  sel.setAttribute("aria-label", label);
  return sel;
}

/**
 * Show `values` in a picker and select `current` (kept as the first option when it is not one of
 * them: a model the list does not know is still the one in use). Options are rebuilt only when
 * they changed, so an open dropdown is not reset by unrelated updates.
 * @param {HTMLSelectElement} sel
 * @param {string[]} values
 * @param {string} current
 * @param {(v: string) => string} [label]
 */
function fillSelect(sel, values, current, label = (v) => v) {
  const all = values.includes(current) || !current ? values : [current, ...values];
  const same =
    sel.options.length === all.length &&
    all.every((v, i) => sel.options[i].value === v && sel.options[i].textContent === label(v));
  if (!same) {
    sel.replaceChildren(
      ...all.map((v) => {
        const o = /** @type {HTMLOptionElement} */ (h("option", undefined, label(v)));
        o.value = v;
        return o;
      }),
    );
  }
  sel.value = current;
}

/**
 * Replace a list's children only when they differ: replaceChildren moves nodes, and a moved
 * <video> that did not need to move would still be reset by some browsers.
 * @param {HTMLElement} parent
 * @param {HTMLElement[]} nodes
 */
function setChildren(parent, nodes) {
  const same = nodes.length === parent.children.length && nodes.every((n, i) => parent.children[i] === n);
  if (!same) parent.replaceChildren(...nodes);
}

/**
 * Call `fn` whenever one of the traits changes; returns the function that stops it.
 * @param {Model} model
 * @param {string[]} names
 * @param {() => void} fn
 * @returns {() => void}
 */
function listen(model, names, fn) {
  for (const name of names) model.on(`change:${name}`, fn);
  return () => {
    for (const name of names) model.off(`change:${name}`, fn);
  };
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

/**
 * Python says whether a turn still runs (transcript.RUNNING): the statuses are its to classify.
 * @param {TurnState | null} turn
 */
function isRunning(turn) {
  return Boolean(turn && turn.running);
}

// ---------------------------------------------------------------------------- 4. one turn

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


const MEDIA_TYPES = new Set(["video/mp4", "video/webm", "video/quicktime", "image/webp", "image/png", "image/jpeg", "image/gif"]);

/**
 * The DOM of one turn, updated in place so a playing video is not reset by progress updates of
 * other turns. Built in parts (head, meta, progress, links, media, messages, actions), each
 * updated by its own method.
 */
class TurnView {
  /**
   * @param {Request} request
   * @param {(turn: TurnState) => void} onRemix
   * @param {(local: string) => string | null} resolve  a notebook-relative path to a URL here
   */
  constructor(request, onRemix, resolve) {
    this.request = request;
    this.resolve = resolve;
    /** Candidate URLs per medium, tried in order; `error` moves to the next one. */
    this.sources = { video: new MediaSources(), thumbnail: new MediaSources() };
    this.maxProgress = 0;
    this.disposed = false;
    /** @type {TurnState | null} */
    this.turn = null;
    // The words a relay profile appended (e.g. "(landscape 16:9, …)") are part of what was paid for.
    this.sent = h("div", "kki-sent");
    this.root = h("li", "kki-turn");
    this.root.append(
      this.buildHead(),
      this.sent,
      this.buildMeta(),
      this.buildProgress(),
      this.buildLinks(),
      this.buildMedia(),
      ...this.buildMessages(),
      this.buildActions(onRemix),
    );
  }

  buildHead() {
    const head = h("div", "kki-turn-head");
    this.num = h("span", "kki-turn-num");
    this.prompt = h("div", "kki-prompt");
    this.branch = h("span", "kki-branch");
    head.append(this.num, this.prompt, this.branch);
    return head;
  }

  buildMeta() {
    const meta = h("div", "kki-turn-meta");
    this.status = h("span", "kki-status");
    this.status.setAttribute("role", "status");
    this.opts = h("span", "kki-opts");
    this.elapsed = h("span", "kki-elapsed");
    this.cached = h("span", "kki-tag kki-cached", "from cache");
    this.cost = h("span", "kki-cost");
    this.takeTag = h("span", "kki-tag kki-take");
    meta.append(this.status, this.opts, this.elapsed, this.cached, this.cost, this.takeTag);
    return meta;
  }

  buildProgress() {
    this.bar = h("div", "kki-progress");
    this.bar.setAttribute("role", "progressbar");
    this.bar.setAttribute("aria-valuemin", "0");
    this.bar.setAttribute("aria-valuemax", "100");
    this.fill = h("div", "kki-progress-fill");
    this.bar.append(this.fill);
    return this.bar;
  }

  buildLinks() {
    this.links = h("div", "kki-links");
    this.taskLabel = h("span", "kki-task-label", "Task");
    this.taskId = h("code", "kki-task-id");
    this.preview = makeLink("kki-link kki-preview", "Preview");
    this.raw = makeLink("kki-link kki-raw", "Raw data");
    this.links.append(this.taskLabel, this.taskId, this.preview, this.raw);
    return this.links;
  }

  buildMedia() {
    this.media = h("div", "kki-media");
    this.thumb = /** @type {HTMLImageElement} */ (h("img", "kki-thumb"));
    this.thumb.alt = "thumbnail";
    this.thumb.decoding = "async";
    this.video = /** @type {HTMLVideoElement} */ (h("video", "kki-video"));
    this.video.controls = true;
    this.video.playsInline = true;
    this.video.preload = "metadata";
    this.media.append(this.thumb, this.video);
    // A source that does not load (the kernel's relay is gone, the folder is not served) gives
    // way to the next candidate; the last resort asks the kernel for the bytes.
    this.video.addEventListener("error", () => this.nextSource("video"));
    this.thumb.addEventListener("error", () => this.nextSource("thumbnail"));
    return this.media;
  }

  buildMessages() {
    this.notices = h("ul", "kki-notices");
    // The relay made something else than asked (its spec says so): visible, never innerHTML.
    this.warnings = h("ul", "kki-warnings");
    this.warnings.setAttribute("role", "status");
    this.error = h("div", "kki-turn-error");
    this.error.setAttribute("role", "alert");
    // How the turn was made when it is not the usual remix (Python's words, as on the %%sora card).
    this.note = h("div", "kki-note");
    return [this.warnings, this.notices, this.note, this.error];
  }

  /** @param {(turn: TurnState) => void} onRemix */
  buildActions(onRemix) {
    const actions = h("div", "kki-actions");
    this.pickBtn = this.requestButton("kki-pick", "Pick this take", "pick");
    this.cancelBtn = this.requestButton("kki-cancel", "Cancel", "cancel");
    this.retryBtn = this.requestButton("kki-retry", "Retry", "retry");
    // Follows the same task: never sends the prompt again, so it costs nothing new.
    this.resumeBtn = this.requestButton("kki-resume", "Resume", "resume");
    this.resumeBtn.title = "Follow the relay's task until its video is ready (nothing is sent again, no new charge)";
    this.resumeWhy = h("div", "kki-resume-why");
    this.remixBtn = button("kki-remix", "Remix from here");
    this.remixBtn.addEventListener("click", () => {
      if (this.turn) onRemix(this.turn);
    });
    this.download = makeLink("kki-link kki-download", "Download");
    this.download.setAttribute("download", "");
    actions.append(this.pickBtn, this.cancelBtn, this.resumeBtn, this.retryBtn, this.remixBtn, this.download, this.resumeWhy);
    return actions;
  }

  /**
   * A button that asks the kernel to do `type` to this turn; disabled until the kernel answers
   * (an error re-enables it; success is shown by the next state).
   * @param {string} className
   * @param {string} text
   * @param {"pick" | "cancel" | "retry" | "resume"} type
   */
  requestButton(className, text, type) {
    const b = button(className, text);
    b.addEventListener("click", () => {
      if (!this.turn) return;
      b.disabled = true;
      this.request({ type, index: this.turn.index }).then((reply) => {
        if (reply.msg.type === "error") b.disabled = false;
      });
    });
    return b;
  }

  /**
   * @param {TurnState} turn
   * @param {number | null} [head] the turn the next prompt continues
   */
  update(turn, head = null) {
    this.turn = turn;
    this.root.dataset.index = String(turn.index);
    this.root.dataset.status = turn.status;
    /** @type {string[]} */
    const notices = Array.isArray(turn.notices) ? turn.notices.map(String) : [];
    this.updateText(turn);
    this.updateProgress(turn);
    this.updateLinks(turn, notices);
    this.updateMedia(turn, notices);
    this.updateMessages(turn, notices);
    this.updateActions(turn);
    this.updateTake(turn, head);
  }

  /** @param {TurnState} turn */
  updateText(turn) {
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
    const length = turn.duration ? `${turn.duration} s` : null;
    this.opts.textContent = [turn.model, turn.orientation, length].filter(Boolean).join(" · ");
    this.cached.hidden = !turn.cached;
    this.updateElapsed();
  }

  /** @param {TurnState} turn  the bar only moves forward, even if a late or replayed state says otherwise */
  updateProgress(turn) {
    const reported = turn.status === "completed" ? 100 : Number(turn.progress) || 0;
    this.maxProgress = Math.min(100, Math.max(this.maxProgress, reported));
    const p = Math.round(this.maxProgress);
    this.bar.dataset.progress = String(p);
    this.bar.setAttribute("aria-valuenow", String(p));
    this.bar.setAttribute("aria-valuetext", `${p}%`);
    this.fill.style.width = `${p}%`;
    this.bar.hidden = turn.status === "failed" && p === 0;
  }

  /**
   * @param {TurnState} turn
   * @param {string[]} notices  gets a line for every unsafe link dropped
   */
  updateLinks(turn, notices) {
    this.taskId.textContent = turn.task_id ?? "";
    this.links.hidden = !turn.task_id && !turn.preview_url && !turn.raw_url;
    this.taskLabel.hidden = !turn.task_id;
    if (setHref(this.preview, turn.preview_url)) notices.push("Unsafe link removed (preview).");
    if (setHref(this.raw, turn.raw_url)) notices.push("Unsafe link removed (raw data).");
  }

  /**
   * @param {TurnState} turn
   * @param {string[]} notices
   */
  updateMedia(turn, notices) {
    if (turn.thumbnail_url && !safeUrl(turn.thumbnail_url)) notices.push("Unsafe link removed (thumbnail).");
    if (turn.video_url && !safeUrl(turn.video_url)) notices.push("Unsafe link removed (video).");
    const completed = turn.status === "completed";
    this.sources.video.set(completed ? this.candidates(turn.local_url, turn.video_url) : []);
    this.sources.thumbnail.set(this.candidates(turn.local_thumbnail_url, turn.thumbnail_url));
    // No URL this page can load (Voila without a notebook path, a finished turn whose relay
    // link died with its kernel): the kernel's bytes are the only way, so ask now, not after an
    // error that an empty source never raises.
    if (completed && !this.sources.video.list.length) this.askKernel("video");
    if (!this.sources.thumbnail.list.length && (turn.local_thumbnail_url || turn.thumbnail_url)) this.askKernel("thumbnail");
    this.showMedia();
    if (completed && turn.download_url && !safeUrl(turn.download_url)) notices.push("Unsafe link removed (download).");
  }

  /** The Download link's URL: the kernel's bytes, the local copy, else the relay's file. */
  downloadUrl() {
    const turn = this.turn;
    if (!turn || turn.status !== "completed") return null;
    const local = this.candidates(turn.local_url, null)[0];
    return this.sources.video.blob ?? local ?? safeUrl(turn.download_url) ?? safeUrl(turn.video_url);
  }

  /**
   * @param {TurnState} turn
   * @param {string[]} notices
   */
  updateMessages(turn, notices) {
    // Python words its notices the same way; show each once.
    const unique = [...new Set(notices)];
    this.notices.replaceChildren(...unique.map((text) => h("li", "kki-notice", text)));
    this.notices.hidden = unique.length === 0;
    const warnings = Array.isArray(turn.warnings) ? turn.warnings.map(String) : [];
    this.warnings.replaceChildren(...warnings.map((text) => h("li", "kki-warning", `⚠ ${text}`)));
    this.warnings.hidden = warnings.length === 0;
    this.error.textContent = turn.error ?? "";
    this.error.hidden = !turn.error;
    // A screen reader announces a failure at once; a video still being made waits its turn.
    this.error.setAttribute("role", turn.status === "still_running" ? "status" : "alert");
    this.note.textContent = typeof turn.note === "string" ? turn.note : "";
    this.note.hidden = !this.note.textContent;
  }

  /** @param {TurnState} turn */
  updateActions(turn) {
    const running = isRunning(turn);
    this.cancelBtn.hidden = !running;
    if (running) this.cancelBtn.disabled = false;
    const retryable = turn.status === "failed" || turn.status === "cancelled";
    this.retryBtn.hidden = !retryable;
    if (retryable) this.retryBtn.disabled = false;
    this.resumeBtn.hidden = !turn.resumable;
    if (turn.resumable) this.resumeBtn.disabled = false;
    this.resumeWhy.textContent = typeof turn.resume_note === "string" ? turn.resume_note : "";
    this.resumeWhy.hidden = !this.resumeWhy.textContent;
    this.remixBtn.hidden = turn.status !== "completed";
    this.remixBtn.textContent = turn.continue_text || "Remix from here";
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
    } else if (this.turn && (kind === "thumbnail" || this.turn.status === "completed")) {
      this.askKernel(kind);
    }
  }

  /**
   * Ask the kernel for the file itself (once per list of candidates). Without a kernel the
   * answer is an error at once and the candidates stay as they are.
   * @param {"video" | "thumbnail"} kind
   */
  askKernel(kind) {
    const sources = this.sources[kind];
    if (!this.turn || sources.asked || sources.blob) return;
    sources.asked = true;
    this.request({ type: "media", index: this.turn.index, kind }).then((reply) => this.setBytes(kind, reply));
  }

  /**
   * The kernel sent the file itself (no URL worked here); an answer without bytes ("no local
   * copy to send") leaves the last candidate in place.
   * @param {"video" | "thumbnail"} kind
   * @param {Reply} reply
   */
  setBytes(kind, reply) {
    if (this.disposed || reply.msg.type !== "media" || !reply.buffers.length) return;
    const fallback = kind === "video" ? "video/mp4" : "image/webp";
    const mime = MEDIA_TYPES.has(String(reply.msg.mime)) ? String(reply.msg.mime) : fallback;
    this.sources[kind].setBlob(URL.createObjectURL(new Blob([reply.buffers[0]], { type: mime })));
    this.showMedia();
  }

  showMedia() {
    const video = this.sources.video.current();
    const poster = this.sources.thumbnail.current();
    setMediaAttr(this.video, "poster", poster);
    this.setVideoSource(video);
    this.video.hidden = !video;
    // Before the video exists the thumbnail stands in for it. Once the video shows, the <img>
    // still loads the poster (hidden, from the browser's cache): a <video poster> that fails
    // raises no error, the <img> does, and its error moves on to the next candidate.
    setMediaAttr(this.thumb, "src", poster);
    this.thumb.hidden = Boolean(video) || !poster;
    this.media.hidden = !video && !poster;
    const download = this.downloadUrl();
    setHref(this.download, download);
    const name = (safeLocalPath(this.turn?.local_url) ?? "").split("/").pop() ?? "";
    this.download.setAttribute("download", name);
  }

  /**
   * Point the player at `url`, keeping where it was: the local copy replaces the relay's URL
   * when the download finishes, often while the user watches.
   * @param {string | null} url
   */
  setVideoSource(url) {
    const video = this.video;
    const before = video.getAttribute("src");
    if ((url ?? null) === before) return;
    const at = before ? video.currentTime : 0;
    const playing = Boolean(before) && !video.paused && !video.ended;
    setMediaAttr(video, "src", url);
    if (!url || (!at && !playing)) return;
    const resume = () => {
      if (at) video.currentTime = Math.min(at, Number.isFinite(video.duration) ? video.duration : at);
      if (playing) video.play().catch(() => {});
    };
    video.addEventListener("loadedmetadata", resume, { once: true });
  }

  dispose() {
    this.disposed = true;
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
    const end = turn.finished_at ?? (isRunning(turn) ? Date.now() / 1000 : null);
    // "took 4 s", not "4 s": next to "sora-2 · portrait" a bare "4 s" reads as the clip's length.
    const took = end ? formatElapsed(end - turn.created_at) : "";
    this.elapsed.textContent = !end ? "" : turn.finished_at ? `took ${took}` : `${took} so far`;
    this.elapsed.title = turn.finished_at ? "time from sending to the result" : "time since it was sent";
  }
}

// ---------------------------------------------------------------------------- 5. takes side by side

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

// ---------------------------------------------------------------------------- 6. header, turn list

/** The title bar (title, simulated badge, "working…") and the error box under it. */
class Header {
  /** @param {Model} model */
  constructor(model) {
    this.model = model;
    this.bar = h("div", "kki-header");
    this.title = h("span", "kki-title");
    this.badge = h("span", "kki-badge kki-badge-sim", "Simulated relay");
    this.badge.title = "No API key is set: answers come from the embedded simulator, not a real model.";
    this.busy = h("span", "kki-busy", "working…");
    this.bar.append(this.title, this.badge, this.busy);

    this.errorBox = h("div", "kki-error");
    this.errorBox.setAttribute("role", "alert");
    this.errorText = h("span", "kki-error-text");
    const close = button("kki-error-close", "Dismiss");
    close.addEventListener("click", () => {
      model.set("error", "");
      model.save_changes();
    });
    this.errorBox.append(this.errorText, close);
  }

  update() {
    this.title.textContent = this.model.get("title") || "Video chat";
    this.badge.hidden = !this.model.get("simulated");
    this.busy.hidden = !this.model.get("busy");
    this.showError(this.model.get("error") || "");
  }

  /** @param {string} text  Python's words for what went wrong ("" hides the box) */
  showError(text) {
    this.errorText.textContent = text;
    this.errorBox.hidden = !text;
  }
}

/**
 * The group key of a turn drawn side by side with its takes, or null for a turn on its own.
 * @param {TurnState} turn
 */
function takeGroup(turn) {
  return typeof turn.take_group === "number" && (turn.takes ?? 0) > 1 ? `g${turn.take_group}` : null;
}

/**
 * The list of turns: one TurnView per turn (kept across updates, so a playing video keeps
 * playing), the takes of a request in one TakesRow, and the elapsed time of running turns
 * ticking once a second without any kernel traffic.
 */
class TurnList {
  /**
   * @param {(turn: TurnState) => TurnView} makeView
   */
  constructor(makeView) {
    this.makeView = makeView;
    this.list = h("ol", "kki-turns");
    this.empty = h("div", "kki-empty", "Describe a video and press Enter. Follow-up prompts remix the previous video.");
    /** @type {Map<string, TurnView>} */
    this.views = new Map();
    /** @type {Map<string, TakesRow>} take group -> its row */
    this.rows = new Map();
    this.timer = setInterval(() => {
      for (const view of this.views.values()) if (isRunning(view.turn)) view.updateElapsed();
    }, 1000);
  }

  /**
   * @param {TurnState[]} turns
   * @param {number | null} head
   */
  update(turns, head) {
    /** @type {HTMLElement[]} */
    const nodes = [];
    /** @type {Map<string, HTMLElement[]>} */
    const grouped = new Map();
    const seen = new Set();
    for (const turn of turns) {
      seen.add(turnKey(turn));
      const view = this.viewFor(turn);
      view.update(turn, head);
      const group = takeGroup(turn);
      if (group === null) {
        nodes.push(view.root);
      } else {
        if (!grouped.has(group)) nodes.push(this.rowFor(group).root); // where its first take would stand
        grouped.set(group, [...(grouped.get(group) ?? []), view.root]);
      }
    }
    this.prune(seen, grouped);
    setChildren(this.list, nodes);
    this.empty.hidden = turns.length > 0;
  }

  /** @param {TurnState} turn */
  viewFor(turn) {
    const key = turnKey(turn);
    let view = this.views.get(key);
    if (!view) {
      view = this.makeView(turn);
      this.views.set(key, view);
    }
    return view;
  }

  /** @param {string} group */
  rowFor(group) {
    let row = this.rows.get(group);
    if (!row) {
      row = new TakesRow();
      this.rows.set(group, row);
    }
    return row;
  }

  /**
   * Fill each row with its takes; drop rows and views of turns that are gone.
   * @param {Set<string>} seen
   * @param {Map<string, HTMLElement[]>} grouped
   */
  prune(seen, grouped) {
    for (const [group, row] of [...this.rows]) {
      const members = grouped.get(group);
      if (members) {
        row.setTakes(members);
      } else {
        row.destroy();
        this.rows.delete(group);
      }
    }
    for (const [key, view] of [...this.views]) {
      if (!seen.has(key)) {
        view.dispose();
        this.views.delete(key);
      }
    }
  }

  destroy() {
    clearInterval(this.timer);
    for (const row of this.rows.values()) row.destroy();
    this.rows.clear();
    // Stop downloading/playing media of a view that is gone.
    for (const view of this.views.values()) view.dispose();
    this.views.clear();
  }
}

// ---------------------------------------------------------------------------- 7. composer

const TAKES = ["1", "2", "3", "4"];

/**
 * The prompt box, the pickers (model, orientation, length, takes), Send, and what the next send
 * would cost (Python's words: estimate and budget left). Enter sends, Shift+Enter adds a line.
 */
class Composer {
  /**
   * @param {Model} model
   * @param {Request} request
   * @param {(text: string) => void} showError
   * @param {() => "unknown" | "connected" | "disconnected"} [kernel]  the channel's state
   */
  constructor(model, request, showError, kernel = () => "connected") {
    this.model = model;
    this.request = request;
    this.showError = showError;
    this.kernel = kernel;
    /** @type {number | null} the turn "Remix from here" chose; null: the conversation's head */
    this.remixFrom = null;
    /** the chip's words for `remixFrom` (Python's, from the turn) */
    this.remixWords = "";
    this.root = h("div", "kki-composer");
    // Shown while no kernel can answer: the box keeps what was typed, the controls are off.
    this.offline = h("div", "kki-offline", NO_KERNEL);
    this.offline.setAttribute("role", "status");
    this.root.append(this.buildRemixChip(), this.buildInput(), ...this.buildControls(), this.offline);
  }

  buildRemixChip() {
    this.remixChip = h("div", "kki-remix-chip");
    this.remixText = h("span", "kki-remix-text");
    const clear = button("kki-remix-clear", "×");
    clear.title = "Continue from the latest turn instead";
    clear.addEventListener("click", () => {
      this.remixFrom = null;
      this.update();
    });
    this.remixChip.append(this.remixText, clear);
    return this.remixChip;
  }

  buildInput() {
    this.input = /** @type {HTMLTextAreaElement} */ (h("textarea", "kki-input"));
    this.input.rows = 2;
    this.input.placeholder = "Describe the video… (Enter sends, Shift+Enter adds a line)";
    this.input.setAttribute("aria-label", "Prompt");
    this.input.addEventListener("input", () => this.update());
    this.input.addEventListener("keydown", (event) => {
      // isComposing: Enter that confirms an IME candidate must not send.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    return this.input;
  }

  buildControls() {
    const controls = h("div", "kki-controls");
    this.modelSel = this.trait(picker("kki-model", "Model"), "model", (v) => v);
    this.orientSel = this.trait(picker("kki-orientation", "Orientation"), "orientation", (v) => v);
    this.durSel = this.trait(picker("kki-duration", "Duration"), "duration", (v) => (v ? Number(v) : null));
    this.takesSel = this.trait(picker("kki-takes-select", "Takes"), "takes", (v) => Number(v) || 1);
    this.sendBtn = button("kki-primary kki-send", "Send");
    this.sendBtn.addEventListener("click", () => this.submit());
    controls.append(this.modelSel, this.orientSel, this.durSel, this.takesSel, this.sendBtn);
    // Its own line under Send: a row of four pickers, the price and Send does not fit a cell.
    this.price = h("div", "kki-price");
    this.price.setAttribute("aria-live", "polite");
    return [controls, this.price];
  }

  /**
   * A picker that writes its trait back to Python when the user changes it.
   * @template {keyof ModelState} K
   * @param {HTMLSelectElement} sel
   * @param {K} name
   * @param {(value: string) => ModelState[K]} parse
   */
  trait(sel, name, parse) {
    sel.addEventListener("change", () => {
      this.model.set(name, parse(sel.value));
      this.model.save_changes();
    });
    return sel;
  }

  /** The pickers show the traits (Python moves them to the head's settings as turns finish). */
  updateControls() {
    const m = this.model;
    // The relay's own models carry their lengths and price in the label (Python's words).
    const labels = new Map((m.get("offers") ?? []).map((o) => [String(o.name), String(o.label ?? o.name)]));
    fillSelect(this.modelSel, (m.get("models") ?? []).map(String), String(m.get("model") ?? ""), (v) => labels.get(v) ?? v);
    fillSelect(this.orientSel, (m.get("orientations") ?? []).map(String), String(m.get("orientation") ?? ""));
    const d = m.get("duration");
    const lengths = ["", ...(m.get("durations") ?? []).map(String)];
    fillSelect(this.durSel, lengths, d === null || d === undefined ? "" : String(d), (v) => (v ? `${v} s` : "default length"));
    fillSelect(this.takesSel, TAKES, String(m.get("takes") ?? 1), (v) => (v === "1" ? "1 take" : `${v} takes`));
  }

  /** The remix chip, Send's state, the price words, and whether a kernel can answer at all. */
  update() {
    const offline = this.kernel() === "disconnected";
    this.root.classList.toggle("kki-disconnected", offline);
    this.offline.hidden = !offline;
    for (const control of [this.modelSel, this.orientSel, this.durSel, this.takesSel]) control.disabled = offline;
    this.remixChip.hidden = this.remixFrom === null;
    this.remixText.textContent = this.remixFrom === null ? "" : this.remixWords;
    this.sendBtn.disabled = offline || this.input.value.trim() === "";
    // A price is a promise about the next send; without a kernel there is none.
    const price = offline ? "" : this.model.get("price_text") || "";
    this.price.textContent = price;
    this.price.hidden = !price;
  }

  /**
   * "Remix from here": the next prompt continues `turn`, with its settings in the pickers (they
   * can still be changed).
   * @param {TurnState} turn
   */
  remix(turn) {
    this.remixFrom = turn.index;
    this.remixWords = turn.continuing_text || `Remixing from #${turn.index + 1}`;
    if (turn.model) this.model.set("model", turn.model);
    if (turn.orientation) this.model.set("orientation", turn.orientation);
    this.model.set("duration", turn.duration ?? null);
    this.model.save_changes();
    this.update();
    this.input.focus();
  }

  /** @param {TurnState[]} turns  a remix target that is gone is forgotten */
  follow(turns) {
    if (this.remixFrom !== null && !turns.some((t) => t.index === this.remixFrom)) this.remixFrom = null;
    this.update();
  }

  submit() {
    const prompt = this.input.value.trim();
    if (!prompt) return;
    if (this.kernel() === "disconnected") {
      this.showError(NO_KERNEL); // what was typed stays in the box
      return;
    }
    // Until the kernel has answered once, the box empties only when it takes the prompt.
    const sure = this.kernel() === "connected";
    const typed = this.input.value;
    const takes = Number(this.takesSel.value);
    this.request({
      type: this.remixFrom === null ? "send" : "remix",
      prompt,
      model: this.modelSel.value,
      orientation: this.orientSel.value || null,
      duration: this.durSel.value ? Number(this.durSel.value) : null,
      takes: takes > 1 ? takes : null,
      index: this.remixFrom,
    }).then((reply) => {
      if (reply.msg.type !== "error") {
        if (!sure && this.input.value === typed) this.clear();
        return;
      }
      this.showError(String(reply.msg.error ?? "Something went wrong."));
      // Give the prompt back so a failed send does not lose what the user typed.
      if (this.input.value === "") {
        this.input.value = typed;
      }
      this.update();
    });
    if (sure) this.clear();
  }

  clear() {
    this.input.value = "";
    this.remixFrom = null;
    this.update();
  }
}

// ---------------------------------------------------------------------------- 7b. the relay

/**
 * The relay's badge (the profile in use; why, in its tooltip) and, for a relay named without a
 * key, a password field. The key goes to the kernel in one "connect" message and leaves the
 * field at once: it is never a trait, so it is never saved with the notebook.
 */
class RelayPart {
  /**
   * @param {Model} model
   * @param {Request} request
   * @param {(text: string) => void} showError
   */
  constructor(model, request, showError) {
    this.model = model;
    this.request = request;
    this.showError = showError;
    this.badge = h("span", "kki-badge kki-badge-relay");
    this.keyBox = h("div", "kki-key");
    this.keyInput = /** @type {HTMLInputElement} */ (h("input", "kki-key-input"));
    this.keyInput.type = "password";
    this.keyInput.autocomplete = "new-password";
    this.keyInput.placeholder = "The relay's API key";
    this.keyInput.setAttribute("aria-label", "API key");
    this.keyInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.isComposing) this.connect();
    });
    this.connectBtn = button("kki-primary kki-connect", "Connect");
    this.connectBtn.addEventListener("click", () => this.connect());
    this.keyBox.append(h("span", "kki-key-label", "API key"), this.keyInput, this.connectBtn);
  }

  connect() {
    const key = this.keyInput.value.trim();
    if (!key) return;
    this.keyInput.value = "";
    this.connectBtn.disabled = true;
    this.request({ type: "connect", key }).then((reply) => {
      this.connectBtn.disabled = false;
      if (reply.msg.type === "error") this.showError(String(reply.msg.error ?? "Could not connect."));
    });
  }

  update() {
    const words = this.model.get("relay_badge") || "";
    this.badge.textContent = words;
    this.badge.title = this.model.get("relay_text") || "";
    this.badge.hidden = !words || Boolean(this.model.get("simulated"));
    this.keyBox.hidden = !this.model.get("needs_key");
  }
}

// ---------------------------------------------------------------------------- 8. the kernel

/** What the widget says when no kernel will answer it (a restored notebook, a stopped kernel). */
export const NO_KERNEL = "no kernel: run the cell to reconnect";
/** Seconds a request waits before the channel looks at the kernel (media: the bytes travel). */
const ANSWER_SECONDS = { media: 60, other: 6 };

/** @param {string} id @returns {Reply} */
function noKernel(id) {
  return { msg: { type: "error", id, error: NO_KERNEL }, buffers: [] };
}

/**
 * Requests to the kernel and their answers, matched by id (quak's pattern): `initialize` owns the
 * model's one `msg:custom` listener, and every view's request gets a promise of its reply. Python
 * answers each request exactly once ({type: "ok" | "error" | "media", id}, VideoChat._on_custom).
 *
 * A view restored from a saved notebook has no comm: what it sends goes nowhere, silently. So the
 * channel greets the kernel when it attaches, and a request not answered in time is an error
 * unless the host says the kernel is busy (a cell is running: it answers when the cell ends).
 * `state` is "unknown" until the first answer, then "connected", or "disconnected".
 */
class Channel {
  constructor() {
    /** @type {Model | null} */
    this.model = null;
    this.nextId = 0;
    /** @type {Map<string, (reply: Reply) => void>} */
    this.waiting = new Map();
    /** @type {"unknown" | "connected" | "disconnected"} */
    this.state = "unknown";
    /** @type {Set<() => void>} */
    this.watchers = new Set();
    /**
     * @param {any} msg
     * @param {(ArrayBuffer | DataView)[]} [buffers]
     */
    this.receive = (msg, buffers) => {
      if (!msg || typeof msg !== "object" || typeof msg.id !== "string") return;
      this.setState("connected");
      const resolve = this.waiting.get(msg.id);
      this.waiting.delete(msg.id);
      resolve?.({ msg, buffers: buffers ?? [] });
    };
  }

  /**
   * @param {Model} model
   * @returns {() => void} detaches (answers still on their way are dropped)
   */
  attach(model) {
    this.model = model;
    model.on("msg:custom", this.receive);
    this.request({ type: "hello" }); // a restored view learns now, not when the user sends
    return () => {
      model.off("msg:custom", this.receive);
      this.model = null;
      this.waiting.clear();
    };
  }

  /** @param {() => void} fn  called when `state` changes; returns the function that stops it */
  watch(fn) {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }

  /** @param {"unknown" | "connected" | "disconnected"} state */
  setState(state) {
    if (state === this.state) return;
    this.state = state;
    for (const fn of this.watchers) fn();
  }

  /**
   * The kernel as the host's widget manager sees it: "gone" (none, dead, disconnected), "busy",
   * "ready", or "unknown" where the manager keeps no kernel (marimo, an HTML export).
   */
  kernelState() {
    /** @type {any} */
    const manager = /** @type {any} */ (this.model)?.widget_manager;
    if (!manager || typeof manager !== "object" || !("kernel" in manager)) return "unknown";
    let kernel;
    try {
      kernel = manager.kernel;
    } catch {
      return "unknown";
    }
    if (!kernel) return "gone";
    if (kernel.isDisposed || kernel.status === "dead" || kernel.connectionStatus === "disconnected") return "gone";
    return ["busy", "starting", "restarting", "autorestarting"].includes(kernel.status) ? "busy" : "ready";
  }

  /** @type {Request} */
  request = (msg) => {
    const model = this.model;
    if (!model || this.kernelState() === "gone") {
      this.setState("disconnected");
      return Promise.resolve(noKernel(""));
    }
    const id = `k${Date.now().toString(36)}-${this.nextId++}`;
    const seconds = msg.type === "media" ? ANSWER_SECONDS.media : ANSWER_SECONDS.other;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.expire(id, seconds);
      model.send({ ...msg, id });
    });
  };

  /**
   * No answer after `seconds`: wait on while the kernel is busy, else answer for it.
   * @param {string} id
   * @param {number} seconds
   */
  expire(id, seconds) {
    setTimeout(() => {
      const resolve = this.waiting.get(id);
      if (!resolve) return;
      if (this.kernelState() === "busy") {
        this.expire(id, seconds);
        return;
      }
      this.setState("disconnected");
      // Nothing still waiting will be answered either: say so now, not one timeout each.
      for (const [waiting, answer] of [...this.waiting]) {
        this.waiting.delete(waiting);
        answer(noKernel(waiting));
      }
    }, seconds * 1000);
  }
}

// ---------------------------------------------------------------------------- 9. the widget

/**
 * One view: header, turn list and composer, kept in step with the model's traits.
 * @param {{ model: Model, el: HTMLElement }} props
 * @param {Channel} channel
 * @returns {() => void} cleanup
 */
function renderChat({ model, el }, channel) {
  // A front end that never called initialize (anywidget < 0.9): this view listens itself.
  const detach = channel.model ? null : channel.attach(model);
  const header = new Header(model);
  const composer = new Composer(model, channel.request, (text) => header.showError(text), () => channel.state);
  const relay = new RelayPart(model, channel.request, (text) => header.showError(text));
  header.bar.insertBefore(relay.badge, header.busy);
  const turns = new TurnList(
    () => new TurnView(channel.request, (turn) => composer.remix(turn), (local) => resolveLocal(local, el)),
  );
  const root = h("div", "kki-chat");
  root.append(header.bar, header.errorBox, turns.list, turns.empty, relay.keyBox, composer.root);
  // Stop JupyterLab's notebook shortcuts (e.g. "a", "b", Shift+Enter) from acting on the cell
  // while the user types in the widget.
  root.addEventListener("keydown", (event) => event.stopPropagation());
  el.replaceChildren(root);

  const showTurns = () => {
    const list = model.get("turn_data") ?? [];
    turns.update(list, model.get("head") ?? null);
    composer.follow(list);
  };
  const stops = [
    listen(model, ["turn_data", "head"], showTurns),
    listen(model, ["title", "simulated", "busy", "error"], () => header.update()),
    listen(model, ["model", "models", "offers", "orientation", "orientations", "duration", "durations", "takes"], () => composer.updateControls()),
    listen(model, ["relay_badge", "relay_text", "needs_key", "simulated"], () => relay.update()),
    listen(model, ["price_text"], () => composer.update()),
    channel.watch(() => composer.update()),
  ];
  header.update();
  relay.update();
  composer.updateControls();
  showTurns();
  return () => {
    for (const stop of stops) stop();
    turns.destroy();
    detach?.();
  };
}

// anywidget calls this once per model (quak's layout): the channel is shared by the model's
// `initialize` and every view `render` draws of it.
export default () => {
  const channel = new Channel();
  return {
    /** @param {{ model: Model }} props */
    initialize: ({ model }) => channel.attach(model),
    /** @param {{ model: Model, el: HTMLElement }} props */
    render: (props) => renderChat(props, channel),
  };
};
