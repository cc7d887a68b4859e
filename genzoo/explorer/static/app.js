// genzoo explorer: one page over the JSON/PNG API of `genzoo explore RUN [RUN_B]`. No libraries, no external
// requests. With two runs every panel is shown twice, side by side (run A's elements keep their ids, run B's
// carry the suffix "-r1"), and the inputs are linked: what one panel is given, its twin is given too.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
const RUN_LETTERS = ["A", "B", "C", "D"];

// ---- talking to the server -------------------------------------------------------------------------------
// Every API request carries this server's token (from the page's <meta>): the server refuses requests without
// it, so other web sites cannot drive the model (docs/explorer.md, "Limits").
const TOKEN = (document.querySelector('meta[name="genzoo-token"]') || {}).content || "";

async function api(url, opts) {
  opts = { ...(opts || {}) };
  opts.headers = { ...(opts.headers || {}), "X-Genzoo-Token": TOKEN };
  let r = await fetch(url, opts);
  for (let i = 0; r.status === 503 && i < 5; i++) {  // busy: come back after Retry-After seconds
    await new Promise((done) => setTimeout(done, 1000 * Math.min(10, Number(r.headers.get("Retry-After")) || 1)));
    r = await fetch(url, opts);
  }
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try {
      const j = await r.json();
      if (typeof j.detail === "string") msg = j.detail;
      else if (Array.isArray(j.detail)) msg = j.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}
const getJson = async (url, opts) => (await api(url, opts)).json();
const postJson = (body) => ({ method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

async function showPng(img, url, opts) {
  const blob = await (await api(url, opts)).blob();
  const old = img.dataset.blob;
  img.src = URL.createObjectURL(blob);
  img.dataset.blob = img.src;
  img.dataset.updates = String(Number(img.dataset.updates || 0) + 1);
  if (old) setTimeout(() => URL.revokeObjectURL(old), 1000);
}

function setImage(img, src) {
  img.src = src;
  img.dataset.updates = String(Number(img.dataset.updates || 0) + 1);
}

function showError(el, e) { if (el) { el.textContent = e.message || String(e); el.hidden = false; } }
function hideError(el) { if (el) el.hidden = true; }

// Run `fn` with the latest arguments only: while one call is in flight, later calls replace each other.
function live(fn, errorEl) {
  let busy = false, next = null;
  const run = async (...args) => {
    if (busy) { next = args; return; }
    busy = true;
    try { await fn(...args); hideError(errorEl); } catch (e) { showError(errorEl, e); }
    busy = false;
    if (next) { const a = next; next = null; run(...a); }
  };
  return run;
}

const query = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined)).toString();
const linspace = (n) => Array.from({ length: n }, (_, i) => (n === 1 ? 0 : i / (n - 1)));

// The server takes PNG or JPEG bytes as image/png, image/jpeg or application/octet-stream.
const uploadType = (blob) => (["image/png", "image/jpeg"].includes(blob.type) ? blob.type : "application/octet-stream");

// ---- views: one per run ------------------------------------------------------------------------------------
// A view holds one run's info and state, finds its own elements (`v.$`) and addresses its own run (`v.url`).
// `emit(kind, v, value)` hands a user's input in view v to the other views' `v.on[kind]` handlers.
const views = [];

function makeView(i, info, multi) {
  const suffix = i === 0 ? "" : `-r${i}`;
  return {
    i, info, multi, suffix, letter: RUN_LETTERS[i] || String(i), on: {},
    map: null, method: null, pin: null, cursor: null, drawing: null, decodeAt: null,
    $: (id) => document.getElementById(id + suffix),
    url: (path, params) => {
      const q = query({ ...(params || {}), run: multi ? i : null });
      return q ? `${path}?${q}` : path;
    },
  };
}

function emit(kind, from, value) {
  for (const v of views) if (v !== from && v.on[kind]) v.on[kind](value);
}

const condLabel = (v) => (v.info.conditional ? Number(v.$("cond-class").value) : null);

// Two runs: put each panel next to its twin (ids suffixed), and the header's per-run part twice.
function pairUp(n) {
  const suffixIds = (root, sfx) => {
    for (const el of [root, ...root.querySelectorAll("[id]")]) if (el.id) el.id += sfx;
    for (const el of root.querySelectorAll("[data-for]")) el.dataset.for += sfx;
  };
  const head = $("run-head");
  for (let i = 1; i < n; i++) {
    const copy = head.cloneNode(true);
    suffixIds(copy, `-r${i}`);
    head.parentNode.appendChild(copy);
  }
  const main = $("panels");
  for (const sec of [...main.querySelectorAll(":scope > section.panel")]) {
    const pair = document.createElement("div");
    pair.className = "pair";
    pair.id = `pair-${sec.id.slice("panel-".length)}`;
    main.insertBefore(pair, sec);
    pair.appendChild(sec);
    for (let i = 1; i < n; i++) {
      const copy = sec.cloneNode(true);
      suffixIds(copy, `-r${i}`);
      pair.appendChild(copy);
    }
  }
  document.body.classList.add("compare");
}

// The panels of view v (run A's ids have no suffix, run B's end in -r1).
function sectionsOf(v) {
  return [...document.querySelectorAll("section.panel")].filter((s) => {
    const m = s.id.match(/-r(\d+)$/);
    return (m ? Number(m[1]) : 0) === v.i;
  });
}

// A panel that one run has and its twin lacks: say so in the twin's place.
function markAbsent(name, present) {
  for (const v of views) {
    if (present(v)) continue;
    const sec = v.$(`panel-${name}`);
    if (!views.some(present) || !sec) continue;
    sec.hidden = false;
    sec.classList.add("absent");
    const title = sec.querySelector("h2").childNodes[0].textContent;
    sec.replaceChildren(sec.querySelector("h2"));
    const p = document.createElement("p");
    p.className = "muted";
    const why = v.info.waiting ? "it has no checkpoint yet" : `it can ${v.info.capabilities.join(", ") || "do none of this"}`;
    p.textContent = `${title}: not for this run (${v.info.model_type}: ${why}).`;
    sec.appendChild(p);
  }
}

// ---- downloads: any image, upscaled without smoothing ----------------------------------------------------
document.addEventListener("click", (e) => {
  const a = e.target.closest("a.dl");
  if (!a) return;
  e.preventDefault();
  const img = $(a.dataset.for);
  if (!img.src || !img.naturalWidth) return;
  const v = views.find((w) => w.suffix && a.dataset.for.endsWith(w.suffix)) || views[0];
  const s = Math.max(1, Math.min(8, Math.round(512 / img.naturalWidth)));
  const c = document.createElement("canvas");
  c.width = img.naturalWidth * s; c.height = img.naturalHeight * s;
  const ctx = c.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0, c.width, c.height);
  c.toBlob((b) => {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(b);
    link.download = `${v.info.run}-${a.dataset.name}.png`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 2000);
  }, "image/png");
});

// ---- header ----------------------------------------------------------------------------------------------
function fmt(v) {
  if (typeof v === "number") return Number.isInteger(v) ? v.toLocaleString("en") : v.toPrecision(4);
  return String(v);
}

function flatten(obj, prefix, out) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out);
    else if (typeof v === "number" || typeof v === "string") out.push([key, v]);
  }
  return out;
}

function header(v) {
  const info = v.info;
  v.$("run-name").textContent = v.multi ? `${v.letter}: ${info.run}` : info.run;
  document.title = `${views.map((w) => w.info.run).join(" vs ")} — genzoo explorer`;
  const facts = [["model", info.model_type], ["data", info.data || "?"], ["image", info.image_shape.join("×")],
    ["latent", info.latent_dim ?? "–"], ["parameters", info.parameters ?? "–"], ["steps", info.steps ?? "?"],
    ["can", info.capabilities.join(", ") || "–"]];
  if (info.status && info.status !== "finished") facts.push(["status", info.status]);
  const val = info.validation || {};
  if (val["val/loss"] !== undefined) facts.push(["val loss", val["val/loss"]]);
  const dl = v.$("facts");
  for (const [k, x] of facts) {
    const d = document.createElement("div");
    d.innerHTML = "<dt></dt><dd></dd>";
    d.firstChild.textContent = k; d.lastChild.textContent = fmt(x);
    dl.appendChild(d);
  }
  const m = info.metrics;  // RUN/metrics.json, as `genzoo evaluate` writes it (or any JSON object)
  const rows = flatten(m && m.metrics && typeof m.metrics === "object" ? m.metrics : m, "", []);
  if (rows.length) {
    v.$("metrics-box").hidden = false;
    const about = m.metrics ? [m.n && `n = ${m.n}`, m.extractor && `extractor: ${m.extractor}`].filter(Boolean) : [];
    v.$("metrics-box").querySelector("summary").textContent = `metrics (${rows.length})${about.length ? " · " + about.join(", ") : ""}`;
    for (const [k, x] of rows) {
      const tr = v.$("metrics").insertRow();
      tr.insertCell().textContent = k; tr.insertCell().textContent = fmt(x);
    }
    if (typeof m.note === "string") v.$("metrics-note").textContent = m.note;
  }
  const notes = [];
  if (info.data_error) notes.push(`The test set could not be loaded, so only panels without it are shown: ${info.data_error}`);
  if (info.waiting) notes.push(`${info.waiting}.`);
  if (info.points) notes.push("A run of 2-D points: the progress pictures in the training-curves panel show real (blue) and generated (red) points over D's output.");
  if (notes.length) { v.$("notice").hidden = false; v.$("notice").textContent = notes.join(" "); }
  if (info.conditional && info.classes) {
    fillClasses(v.$("cond-class"), info.classes, false);
    v.$("conditioning").hidden = info.panels.every((p) => p === "samples");
    let applying = false;  // a class passed on from the other run: not passed back
    v.$("cond-class").addEventListener("change", (e) => { if (!applying) emit("cond", v, e.target.value); });
    v.on.cond = (value) => {
      if (![...v.$("cond-class").options].some((o) => o.value === value)) return;
      v.$("cond-class").value = value;
      applying = true;
      try { v.$("cond-class").dispatchEvent(new Event("change")); } finally { applying = false; }
    };
  }
}

function fillClasses(select, classes, withMixed) {
  if (withMixed) select.add(new Option("mixed", ""));
  classes.forEach((c, i) => select.add(new Option(`${i}: ${c}`, String(i))));
}

// ---- samples ---------------------------------------------------------------------------------------------
function initSamples(v) {
  const info = v.info, $v = v.$;
  let seed = 0;
  const opts = info.sample_options;
  $v("samples-temperature-box").hidden = !opts.includes("temperature");
  $v("samples-truncation-box").hidden = !opts.includes("truncation");
  if (info.conditional && info.classes) { $v("samples-class-box").hidden = false; fillClasses($v("samples-class"), info.classes, true); }
  $v("samples-steps-box").hidden = !opts.includes("steps");
  $v("samples-guidance-box").hidden = !opts.includes("guidance");
  $v("samples-trajectory-box").hidden = !info.trajectory;
  const update = live(async () => {
    const p = { n: 16, seed };
    if (opts.includes("temperature")) p.temperature = $v("samples-temperature").value;
    if ($v("samples-truncate").checked) p.truncation = $v("samples-truncation").value;
    if (info.conditional && $v("samples-class").value !== "") p.label = $v("samples-class").value;
    if (opts.includes("steps")) p.steps = $v("samples-steps").value;
    if (opts.includes("guidance")) p.guidance = $v("samples-guidance").value;
    await showPng($v("samples-img"), v.url("/api/samples.png", p));
    if (info.trajectory) await showPng($v("samples-trajectory"), v.url("/api/trajectory.png", { ...p, n: 4, frames: Math.min(10, Number(p.steps || 50) + 1), scale: 2 }));
  }, $v("samples-error"));
  $v("samples-steps").oninput = (e) => { $v("samples-steps-out").value = e.target.value; update(); };
  $v("samples-guidance").oninput = (e) => { $v("samples-guidance-out").value = Number(e.target.value).toFixed(1); update(); };
  $v("samples-reroll").onclick = () => { seed = Math.floor(Math.random() * 2 ** 31); update(); emit("seed", v, seed); };
  v.on.seed = (s) => { seed = s; update(); };
  $v("samples-temperature").oninput = (e) => { $v("samples-temperature-out").value = Number(e.target.value).toFixed(2); update(); };
  $v("samples-truncate").onchange = (e) => {
    $v("samples-truncation").disabled = !e.target.checked;
    $v("samples-truncation-out").value = e.target.checked ? $v("samples-truncation").value : "off";
    update();
  };
  $v("samples-truncation").oninput = (e) => { $v("samples-truncation-out").value = e.target.value; update(); };
  $v("samples-class").onchange = update;
  update();
}

// ---- latent map ------------------------------------------------------------------------------------------
const METHOD_NAMES = { latent: "the latent itself (2-D)", pca: "PCA", tsne: "t-SNE" };

// A 2-D latent keeps equal scales on both axes (distances mean something there); a projection fills the canvas.
function mapBounds(method, [x0, x1, y0, y1]) {
  if (method !== "latent") return [x0, x1, y0, y1];
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, r = Math.max(x1 - x0, y1 - y0) / 2;
  return [cx - r, cx + r, cy - r, cy + r];
}

function toCanvas(v, canvas, x, y) {
  const [x0, x1, y0, y1] = v.map.bounds;
  return [((x - x0) / (x1 - x0)) * canvas.width, ((y1 - y) / (y1 - y0)) * canvas.height];
}

// A point of the map's box given as fractions (u from the left, w from the top) -> plane coordinates.
function fromFraction(v, u, w) {
  const [x0, x1, y0, y1] = v.map.bounds;
  return [x0 + u * (x1 - x0), y1 - w * (y1 - y0)];
}

function fractionOf(canvas, e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) / r.width, (e.clientY - r.top) / r.height];
}

function drawMap(v) {
  const canvas = v.$("map"), ctx = canvas.getContext("2d"), m = v.map;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!m) return;
  if (m.method === "latent") {  // the axes through the origin
    const [ox, oy] = toCanvas(v, canvas, 0, 0);
    ctx.strokeStyle = "#e3e6ea"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(ox, 0); ctx.lineTo(ox, canvas.height); ctx.moveTo(0, oy); ctx.lineTo(canvas.width, oy); ctx.stroke();
  }
  ctx.globalAlpha = 0.75;
  for (let i = 0; i < m.xy.length / 2; i++) {
    const [px, py] = toCanvas(v, canvas, m.xy[2 * i], m.xy[2 * i + 1]);
    ctx.fillStyle = m.labels ? PALETTE[m.labels[i] % PALETTE.length] : "#555";
    ctx.beginPath(); ctx.arc(px, py, 2.2, 0, 2 * Math.PI); ctx.fill();
  }
  ctx.globalAlpha = 1;
  const mark = (p, color, size) => {
    if (!p) return;
    const [px, py] = toCanvas(v, canvas, p[0], p[1]);
    ctx.strokeStyle = color; ctx.lineWidth = 2.5;
    ctx.beginPath(); ctx.moveTo(px - size, py - size); ctx.lineTo(px + size, py + size);
    ctx.moveTo(px + size, py - size); ctx.lineTo(px - size, py + size); ctx.stroke();
  };
  if (v.pin) { const [px, py] = toCanvas(v, canvas, ...v.pin); ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(px, py, 7, 0, 2 * Math.PI); ctx.stroke(); }
  if (v.cursor) {  // where the other run's pointer is (linked hover)
    const [px, py] = toCanvas(v, canvas, ...v.cursor);
    ctx.strokeStyle = "#d62728"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(px - 9, py); ctx.lineTo(px + 9, py); ctx.moveTo(px, py - 9); ctx.lineTo(px, py + 9); ctx.stroke();
  }
  if (v.drawing && v.drawing.xy && v.drawing.method === m.method) mark(v.drawing.xy, "#111", 8);
}

function legend(box, classes) {
  box.textContent = "";
  (classes || []).forEach((c, i) => {
    const s = document.createElement("span");
    s.textContent = c; s.style.setProperty("--c", PALETTE[i % PALETTE.length]);
    box.appendChild(s);
  });
}

async function loadMap(v, method) {
  v.$("map-status").textContent = method === "tsne" ? "computing t-SNE once (then cached in the run directory)…" : "encoding the test set…";
  try {
    const m = await getJson(v.url("/api/map", { method }));
    v.map = { method: m.method, xy: m.xy, labels: m.labels, bounds: mapBounds(m.method, m.bounds), classes: m.classes };
    v.method = method;
    v.$("map-status").textContent = `${m.xy.length / 2} test images · plane: ${METHOD_NAMES[m.method]}` +
      (m.method === "tsne" ? " (a point decodes as a weighted mean of its nearest codes)" : "");
    legend(v.$("map-legend"), m.classes);
    hideError(v.$("map-error"));
  } catch (e) { v.$("map-status").textContent = ""; showError(v.$("map-error"), e); }
  v.pin = null;
  drawMap(v);
  redrawDrawingPlace(v);
}

// How a hover on one run's map is passed to the other: the same place in each map's box, or the same coordinates.
const linkMode = () => ($("link-map") ? $("link-map").value : "place");

function initMap(v) {
  const info = v.info, canvas = v.$("map");
  if (info.map_methods.length > 1) {
    v.$("map-method-box").hidden = false;
    for (const m of info.map_methods) v.$("map-method").add(new Option(METHOD_NAMES[m] || m, m));
    v.$("map-method").onchange = (e) => loadMap(v, e.target.value);
  }
  const decodeAt = live(async (x, y) => {
    v.$("map-xy").textContent = `(${x.toFixed(2)}, ${y.toFixed(2)})`;
    await showPng(v.$("map-img"), v.url("/api/map/decode.png", { method: v.method, x, y, label: condLabel(v) }));
  }, v.$("map-error"));
  v.decodeAt = decodeAt;
  const share = (kind, e) => {
    const [u, w] = fractionOf(canvas, e);
    const [x, y] = fromFraction(v, u, w);
    emit(kind, v, { u, w, x, y });
    return [x, y];
  };
  const linked = ({ u, w, x, y }) => (linkMode() === "coords" ? [x, y] : fromFraction(v, u, w));
  canvas.addEventListener("pointermove", (e) => {
    if (!v.map) return;
    if (v.cursor) { v.cursor = null; drawMap(v); }
    decodeAt(...share("hover", e));
  });
  canvas.addEventListener("click", (e) => {
    if (!v.map) return;
    v.pin = share("pin", e);
    drawMap(v);
    decodeAt(...v.pin);
  });
  canvas.addEventListener("pointerleave", () => { if (v.pin) decodeAt(...v.pin); emit("leave", v); });
  v.on.hover = (p) => { if (!v.map) return; v.cursor = linked(p); drawMap(v); decodeAt(...v.cursor); };
  v.on.pin = (p) => { if (!v.map) return; v.pin = linked(p); v.cursor = null; drawMap(v); decodeAt(...v.pin); };
  v.on.leave = () => { if (!v.map) return; v.cursor = null; drawMap(v); if (v.pin) decodeAt(...v.pin); };
  v.$("cond-class").addEventListener("change", () => { if (v.pin) decodeAt(...v.pin); });
  return loadMap(v, info.map_methods[0]);
}

// ---- draw or upload --------------------------------------------------------------------------------------
async function redrawDrawingPlace(v) {
  const d = v.drawing;
  if (!d || !d.z || !v.map || d.method === v.method) return;
  // Place the drawing on the newly chosen plane by re-sending it.
  if (v.drawingChanged) v.drawingChanged();
}

function initDraw(v) {
  const canvas = v.$("draw");
  let source = null;  // the bytes of the last upload until someone draws over it
  const send = live(async (body) => {
    const p = { fit: v.$("draw-fit").checked, method: v.map ? v.method : null };
    const r = await getJson(v.url("/api/encode", p), { method: "POST", headers: { "Content-Type": uploadType(body) }, body });
    setImage(v.$("draw-input"), r.input);
    if (r.reconstruction) setImage(v.$("draw-recon"), r.reconstruction);
    v.drawing = { z: r.z, xy: r.xy, method: p.method, image: r.input };
    v.$("draw-xy").textContent = r.xy ? `on the map at (${r.xy[0].toFixed(2)}, ${r.xy[1].toFixed(2)}) — the × mark` : "";
    if (v.map) drawMap(v);
    document.dispatchEvent(new Event(`drawing${v.suffix}`));
  }, v.$("draw-error"));
  // A stroke is sent to this run, and the canvas's picture to the other runs (which copy it onto their canvas).
  const encode = orderedBlobs(canvas);
  const sendCanvas = () => encode((b) => { send(b); emit("drawing", v, { canvas, blob: b }); });
  const board = pen(canvas, { dark: v.info.background !== "light", width: () => v.$("draw-pen").value,
                              onStart: () => { source = null; }, onStroke: sendCanvas });
  v.drawingChanged = () => (source ? send(source) : encode((b) => send(b)));
  v.on.drawing = ({ canvas: other, blob }) => {
    source = null;
    board.ctx.drawImage(other, 0, 0, canvas.width, canvas.height);
    send(blob);
  };
  v.$("draw-clear").onclick = () => { board.clear(); source = null; v.drawingChanged(); emit("clear", v); };
  v.on.clear = () => { board.clear(); source = null; v.drawingChanged(); };
  v.$("draw-fit").onchange = (e) => { v.drawingChanged(); emit("fit", v, e.target.checked); };
  v.on.fit = (on) => { v.$("draw-fit").checked = on; v.drawingChanged(); };
  const upload = (file) => { source = file; send(file); board.showFile(file); };
  v.$("draw-upload").onchange = (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (!file) return;
    upload(file);
    emit("upload", v, file);
  };
  v.on.upload = upload;
}

// ---- picking an image: a test image or the drawing -------------------------------------------------------
// `key`: the link under which a choice is passed to the other runs' twin picker.
function picker(v, el, onChange, key) {
  const parts = $("picker").content.cloneNode(true);  // select, index, random button, thumbnail
  el.insertBefore(parts, el.querySelector("button:not(.rand)"));
  const src = el.querySelector(".src"), index = el.querySelector(".index"), thumb = el.querySelector("img");
  index.value = el.dataset.index || "0";
  index.max = String(v.info.test_size - 1);
  const sync = () => { index.hidden = src && src.value !== "test"; el.querySelector(".rand").hidden = index.hidden; };
  const share = () => emit(key, v, { src: src ? src.value : "test", index: index.value });
  if (src) src.onchange = () => { sync(); onChange(); share(); };
  index.onchange = (e) => { onChange(); if (!(e && e.quiet)) share(); };  // {quiet: true}: not passed on
  el.querySelector(".rand").onclick = () => { index.value = String(Math.floor(Math.random() * v.info.test_size)); onChange(); share(); };
  v.on[key] = (c) => {
    if (src) src.value = c.src;
    index.value = String(Math.min(Number(c.index), v.info.test_size - 1));
    sync(); onChange();
  };
  document.addEventListener(`drawing${v.suffix}`, () => { if (src && src.value === "drawing") onChange(); });
  sync();
  return async () => {  // -> the chosen image's latent code
    if (src && src.value === "drawing") {
      if (!v.drawing || !v.drawing.z) throw new Error("draw or upload an image first (panel “Draw or upload”)");
      if (thumb) setImage(thumb, v.drawing.image);
      return v.drawing.z;
    }
    const i = Number(index.value);
    const r = await getJson(v.url("/api/code", { index: i }));
    if (thumb) await showPng(thumb, v.url("/api/test.png", { index: i }));
    return r.z;
  };
}

// ---- interpolate -----------------------------------------------------------------------------------------
function initInterpolate(v) {
  const $v = v.$;
  let ends = null;
  const t = () => Number($v("interp-t").value) / 100;
  const frame = live(async () => {
    if (!ends) return;
    $v("interp-t-out").value = t().toFixed(2);
    await showPng($v("interp-frame"), v.url("/api/interpolate.png"), postJson({ a: ends[0], b: ends[1], mode: $v("interp-mode").value, ts: [t()], label: condLabel(v) }));
  }, $v("interp-error"));
  const update = live(async () => {
    ends = [await codeA(), await codeB()];
    const steps = Math.max(2, Math.min(16, Number($v("interp-steps").value) || 8));
    await showPng($v("interp-strip"), v.url("/api/interpolate.png"), postJson({ a: ends[0], b: ends[1], mode: $v("interp-mode").value, ts: linspace(steps), label: condLabel(v) }));
    await frame();
  }, $v("interp-error"));
  const codeA = picker(v, $v("interp-a"), update, "interp-a"), codeB = picker(v, $v("interp-b"), update, "interp-b");
  const share = () => emit("interp", v, { mode: $v("interp-mode").value, steps: $v("interp-steps").value, t: $v("interp-t").value });
  $v("interp-mode").onchange = () => { update(); share(); };
  $v("interp-steps").onchange = () => { update(); share(); };
  $v("interp-t").oninput = () => { frame(); share(); };
  v.on.interp = (c) => {
    const changed = c.mode !== $v("interp-mode").value || c.steps !== $v("interp-steps").value;
    $v("interp-mode").value = c.mode; $v("interp-steps").value = c.steps; $v("interp-t").value = c.t;
    if (changed) update(); else frame();
  };
  $v("cond-class").addEventListener("change", update);
  update();
}

// ---- attributes ------------------------------------------------------------------------------------------
function initAttributes(v) {
  const info = v.info, $v = v.$;
  let z = null;
  const box = $v("attr-sliders");
  const names = info.directions || [];  // the classes, or the attribute table's columns (celeba)
  names.forEach((c, i) => {
    const label = document.createElement("span"); label.textContent = c;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: "-3", max: "3", step: "0.1", value: "0" });
    input.dataset.cls = String(i);
    input.setAttribute("aria-label", `towards ${c}`);
    const out = document.createElement("output"); out.value = "0.0";
    input.oninput = (e) => { out.value = Number(input.value).toFixed(1); render(); if (e) emit("alpha", v, { cls: c, value: input.value }); };
    box.append(label, input, out);
  });
  v.on.alpha = ({ cls, value }) => {  // the same class (or attribute) name in the other run's dataset
    const i = names.indexOf(cls);
    const input = box.querySelector(`input[data-cls='${i}']`);
    if (input) { input.value = value; input.oninput(null); }
  };
  const alphas = () => Object.fromEntries([...box.querySelectorAll("input")].filter((s) => Number(s.value) !== 0).map((s) => [s.dataset.cls, Number(s.value)]));
  const render = live(async () => {
    if (!z) return;
    await showPng($v("attr-img"), v.url("/api/attributes.png"), postJson({ z, alphas: alphas(), label: condLabel(v) }));
  }, $v("attr-error"));
  const pick = picker(v, $v("attr-src"), live(async () => {
    z = await pick();
    await showPng($v("attr-orig"), v.url("/api/decode.png"), postJson({ z: [z], label: condLabel(v) }));
    await render();
  }, $v("attr-error")), "attr-src");
  const reset = () => { box.querySelectorAll("input").forEach((s) => { s.value = "0"; s.nextSibling.value = "0.0"; }); render(); };
  $v("attr-reset").onclick = () => { reset(); emit("attr-reset", v); };
  v.on["attr-reset"] = reset;
  const index = $v("attr-src").querySelector(".index");
  $v("cond-class").addEventListener("change", () => index.onchange({ quiet: true }));
  index.onchange({ quiet: true });
}

// ---- denoise ---------------------------------------------------------------------------------------------
function initDenoise(v) {
  const info = v.info, $v = v.$;
  const index = $v("denoise-src").querySelector(".index");
  index.max = String(info.test_size - 1);
  const update = live(async () => {
    $v("denoise-level-out").value = Number($v("denoise-level").value).toFixed(2);
    await showPng($v("denoise-img"), v.url("/api/denoise.png", { index: index.value, noise: $v("denoise-level").value }));
  }, $v("denoise-error"));
  const share = () => emit("denoise", v, { index: index.value, level: $v("denoise-level").value });
  index.onchange = () => { update(); share(); };
  $v("denoise-src").querySelector(".rand").onclick = () => { index.value = String(Math.floor(Math.random() * info.test_size)); update(); share(); };
  $v("denoise-level").oninput = () => { update(); share(); };
  v.on.denoise = (c) => { index.value = c.index; $v("denoise-level").value = c.level; update(); };
  if (info.noise) {  // [kind, level]: start at the level the model was trained with
    $v("denoise-level").value = String(Math.min(1, info.noise[1]));
    $v("denoise-kind").textContent = info.noise[0] === "gaussian" ? "noise σ" : `${info.noise[0]} probability`;
  }
  update();
}

// ---- a GAN of 2-D points: real and generated points over D's output (GAN Lab's view) ------------------------
function initPoints(v) {
  const $v = v.$, canvas = $v("points"), ctx = canvas.getContext("2d");
  let seed = 0, view = null, shownStep;
  const draw = () => {
    const r = view, W = canvas.width, H = canvas.height;
    const lo = r.probability ? 0 : Math.min(...r.field), hi = r.probability ? 1 : Math.max(...r.field);
    const img = new ImageData(r.res, r.res);
    r.field.forEach((f, i) => {
      const g = Math.round(255 * (0.25 + 0.7 * (f - lo) / Math.max(hi - lo, 1e-8)));
      img.data.set([g, g, g, 255], 4 * i);
    });
    const off = document.createElement("canvas");
    off.width = off.height = r.res;
    off.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(off, 0, 0, W, H);
    const px = (x) => ((x + r.lim) / (2 * r.lim)) * W, py = (y) => ((r.lim - y) / (2 * r.lim)) * H;
    for (const [pts, colour] of [[r.real, "#1f77b4"], [r.fake, "#d62728"]]) {
      ctx.fillStyle = colour; ctx.globalAlpha = 0.7;
      for (let i = 0; i < pts.length; i += 2) { ctx.beginPath(); ctx.arc(px(pts[i]), py(pts[i + 1]), 1.8, 0, 2 * Math.PI); ctx.fill(); }
    }
    ctx.globalAlpha = 1;
    $v("points-status").textContent = `${r.modes_covered} of ${r.modes.length} modes covered · ${(100 * r.hq_share).toFixed(1)}% of the generated points high-quality` +
      (r.checkpoint_step !== null ? ` · checkpoint of step ${fmt(r.checkpoint_step)}` : "");
    canvas.dataset.updates = String(Number(canvas.dataset.updates || 0) + 1);
  };
  const update = live(async () => {
    view = await getJson(v.url("/api/points", { n: $v("points-n").value, seed, res: 96 }));
    shownStep = view.checkpoint_step;
    draw();
  }, $v("points-error"));
  canvas.addEventListener("pointermove", (e) => {
    if (!view) return;
    const [u, w] = fractionOf(canvas, e);
    const i = Math.min(view.res - 1, Math.floor(w * view.res)), j = Math.min(view.res - 1, Math.floor(u * view.res));
    const x = -view.lim + u * 2 * view.lim, y = view.lim - w * 2 * view.lim;
    $v("points-at").textContent = `${view.field_label} at (${x.toFixed(2)}, ${y.toFixed(2)}) = ${fmt(view.field[i * view.res + j])}`;
  });
  $v("points-n").onchange = update;
  $v("points-reroll").onclick = () => { seed = Math.floor(Math.random() * 2 ** 31); update(); };
  v.curvesChanged = (r) => { if (r.step !== shownStep) update(); };  // a new checkpoint, perhaps: look again
  update();
}

// ---- training curves, followed while the run trains --------------------------------------------------------
const POLL_MS = 2000;  // while the run is training (status started/running); a poll whose etag is current costs a stat()
const CURVE_GROUPS = [  // first match wins; columns matching none go to "other"
  ["losses", (c) => /(^|\/|_)(loss|recon|kl|neg_elbo|elbo|adv|nll|mse|bce|l1|cycle|identity|gp|penalty|contractive|sparsity)/.test(c)],
  ["D(x) and D(G(z))", (c) => /d_real|d_fake/.test(c)],
  ["mode coverage", (c) => /modes_|hq_share|classes_covered/.test(c)],
  ["images/s", (c) => /images_per_s/.test(c)],
  ["gradients", (c) => /grad/.test(c)],
  ["learning rate", (c) => /(^|\/)lr$/.test(c)],
];
const NOT_PLOTTED = new Set(["epoch"]);

function groupCurves(names) {
  const groups = new Map();
  for (const name of names) {
    if (NOT_PLOTTED.has(name)) continue;
    const g = (CURVE_GROUPS.find(([, test]) => test(name)) || ["other"])[0];
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(name);
  }
  const order = [...CURVE_GROUPS.map(([g]) => g), "other"];
  return [...groups.entries()].sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]));
}

// A short axis label: 3 significant digits, exponent notation for very large or small numbers.
function axisNumber(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(3)));
}

// One chart: the series of `names` against xs, on a linear or (positive values only) log axis.
function drawChart(canvas, xs, data, names, log) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height, L = 58, R = 8, T = 8, B = 22;
  ctx.clearRect(0, 0, W, H);
  const tf = (y) => (log ? (y > 0 ? Math.log10(y) : null) : y);
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const name of names) {
    data[name].forEach((y, i) => {
      const ty = y === null ? null : tf(y);
      if (ty === null || xs[i] === null) return;
      x0 = Math.min(x0, xs[i]); x1 = Math.max(x1, xs[i]); y0 = Math.min(y0, ty); y1 = Math.max(y1, ty);
    });
  }
  ctx.font = "11px system-ui, sans-serif"; ctx.fillStyle = "#6b7480"; ctx.strokeStyle = "#dde1e6"; ctx.lineWidth = 1;
  ctx.strokeRect(L, T, W - L - R, H - T - B);
  if (!(x1 >= x0 && y1 >= y0)) { ctx.fillText("no values yet", L + 8, T + 16); return; }
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const d = Math.abs(y0) * 0.05 || 1; y0 -= d; y1 += d; }
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R), py = (y) => T + ((y1 - y) / (y1 - y0)) * (H - T - B);
  const label = (y) => axisNumber(log ? 10 ** y : y);
  ctx.textAlign = "right";
  ctx.fillText(label(y1), L - 4, T + 9); ctx.fillText(label(y0), L - 4, H - B);
  ctx.textAlign = "left"; ctx.fillText(axisNumber(x0), L, H - 6);
  ctx.textAlign = "right"; ctx.fillText(axisNumber(x1), W - R, H - 6);
  names.forEach((name, k) => {
    ctx.strokeStyle = PALETTE[k % PALETTE.length]; ctx.lineWidth = 1.5;
    ctx.beginPath();
    let started = false, count = 0;
    data[name].forEach((y, i) => {
      const ty = y === null ? null : tf(y);
      if (ty === null || xs[i] === null) return;  // rows without this column: the line joins its neighbours
      if (started) ctx.lineTo(px(xs[i]), py(ty)); else { ctx.moveTo(px(xs[i]), py(ty)); started = true; }
      count++;
    });
    ctx.stroke();
    if (count === 1) {  // a single value: a dot
      const i = data[name].findIndex((y) => y !== null && tf(y) !== null);
      ctx.fillStyle = ctx.strokeStyle; ctx.beginPath(); ctx.arc(px(xs[i]), py(tf(data[name][i])), 3, 0, 2 * Math.PI); ctx.fill();
    }
  });
}

function initCurves(v) {
  const $v = v.$, box = $v("curves-charts");
  let etag = null, last = null, gridStep = null, following = true;
  const charts = new Map();  // group -> {canvas, legend}
  const render = () => {
    const r = last;
    const names = Object.keys(r.series);
    const log = $v("curves-log").checked;
    const groups = groupCurves(names);
    for (const [g, c] of charts) {  // a replaced file may lack a group it had
      if (!groups.some(([h]) => h === g)) { c.canvas.closest("figure").remove(); charts.delete(g); }
    }
    for (const [g, cols] of groups) {
      if (!charts.has(g)) {
        const fig = document.createElement("figure");
        fig.className = "chart";
        fig.innerHTML = "<figcaption class='chart-title'></figcaption><canvas width='420' height='170'></canvas><div class='chart-legend'></div>";
        fig.querySelector(".chart-title").textContent = g;
        fig.dataset.group = g;
        box.appendChild(fig);
        charts.set(g, { canvas: fig.querySelector("canvas"), legend: fig.querySelector(".chart-legend") });
      }
      const c = charts.get(g);
      drawChart(c.canvas, r.xs, r.series, cols, log && g !== "mode coverage");
      c.legend.textContent = "";
      cols.forEach((name, k) => {
        const s = document.createElement("span");
        const y = r.last_row ? r.last_row[name] : undefined;
        s.textContent = y === undefined ? name : `${name} ${fmt(y)}`;
        s.style.setProperty("--c", PALETTE[k % PALETTE.length]);
        c.legend.appendChild(s);
      });
    }
    const status = r.status ? ` · ${r.status}${r.live ? " (followed live)" : ""}` : "";
    const steps = r.step !== null && r.step !== undefined ? ` · step ${fmt(r.step)}${r.total_steps ? ` of ${fmt(r.total_steps)}` : ""}` : "";
    const notes = [r.torn ? "an incomplete last line is left out until it is written" : "",
      r.skipped_rows ? `${r.skipped_rows} malformed row(s) skipped` : "",
      r.text_columns.length ? `not plotted (not numbers): ${r.text_columns.join(", ")}` : "",
      r.shown < r.rows ? `${r.shown} of ${r.rows} rows drawn` : ""].filter(Boolean);
    $v("curves-status").textContent = r.exists
      ? `${r.rows} rows of ${r.file}, against ${r.x}${steps}${status}${notes.length ? " — " + notes.join("; ") : ""}`
      : `no ${r.file} yet${status}`;
    $v("panel-curves").dataset.rows = String(r.rows);
    // the progress grids: the newest one while the slider is at its end
    const grids = r.grids || [];
    $v("curves-grid-box").hidden = !grids.length;
    if (grids.length) {
      const slider = $v("curves-step");
      slider.max = String(grids.length - 1);
      if (following) slider.value = slider.max;
      return showGrid(grids[Number(slider.value)]);  // the first poll waits for it (the page is ready after)
    }
    return null;
  };
  const showGrid = live(async (step) => {
    if (step === gridStep) return;
    gridStep = step;
    $v("curves-step-out").value = `step ${fmt(step)}`;
    await showPng($v("curves-grid"), v.url("/api/progress.png", { step }));
  }, $v("curves-error"));
  $v("curves-step").oninput = (e) => {
    const grids = last.grids;
    following = Number(e.target.value) === grids.length - 1;
    showGrid(grids[Number(e.target.value)]);
  };
  $v("curves-log").onchange = (e) => { if (last) render(); emit("curves-log", v, e.target.checked); };
  v.on["curves-log"] = (on) => { $v("curves-log").checked = on; if (last) render(); };
  const poll = async () => {
    let liveRun = true;
    try {
      if (!document.hidden) {
        const r = await getJson(v.url("/api/metrics", { known: etag }));
        if (r.changed) {
          etag = r.etag; last = r; await render();
          if (v.curvesChanged) v.curvesChanged(r);
          if (v.info.waiting) {  // the first checkpoint may be there now: then the page shows the model's panels
            const info = await getJson(v.url("/api/info"));
            if (!info.waiting) { location.reload(); return; }
          }
        }
        liveRun = last ? last.live : true;
      }
      hideError($v("curves-error"));
    } catch (e) { showError($v("curves-error"), e); }
    if (liveRun) setTimeout(poll, POLL_MS);  // a finished run is not polled any more
  };
  return poll();
}

// ---- start -----------------------------------------------------------------------------------------------
async function main() {
  let runs;
  try {
    runs = (await getJson("/api/runs")).runs;
  } catch (e) { $("notice").hidden = false; $("notice").textContent = `cannot reach the explorer: ${e.message}`; return; }
  const multi = runs.length > 1;
  if (multi) {
    pairUp(runs.length);
    $("link-box").hidden = false;
  }
  runs.forEach((info, i) => views.push(makeView(i, info, multi)));
  for (const v of views) {
    header(v);
    const info = v.info;
    for (const p of info.panels) if (v.$(`panel-${p}`)) v.$(`panel-${p}`).hidden = false;
    if (info.curves) v.$("panel-curves").hidden = false;
    if (multi) for (const sec of sectionsOf(v)) sec.querySelector("h2").dataset.run = `${v.letter}: ${info.run} (${info.model_type})`;
  }
  if (multi) {
    for (const name of ["samples", "map", "draw", "interpolate", "attributes", "denoise", "points", "translate"]) markAbsent(name, (v) => v.info.panels.includes(name));
    markAbsent("curves", (v) => v.info.curves);
  }
  const work = [];
  for (const v of views) {
    const has = (p) => v.info.panels.includes(p);
    if (has("samples")) initSamples(v);
    if (has("map")) work.push(initMap(v));
  }
  await Promise.all(work);
  for (const v of views) {
    const has = (p) => v.info.panels.includes(p);
    if (has("draw")) initDraw(v);
    if (has("interpolate")) initInterpolate(v);
    if (has("attributes")) initAttributes(v);
    if (has("denoise")) initDenoise(v);
    if (has("points")) initPoints(v);
    if (has("translate")) initTranslate(v).catch((e) => showError(v.$("tr-error"), e));
  }
  // the curves last, and their first answer drawn before the page says it is ready (no layout shift after)
  await Promise.all(views.filter((v) => v.info.curves).map(initCurves));
  document.body.dataset.ready = "true";
}

main();
