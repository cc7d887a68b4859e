// genzoo explorer: one page over the JSON/PNG API of `genzoo explore RUN`. No libraries, no external requests.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
const state = { info: null, map: null, method: null, pin: null, hover: null, drawing: null };

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
const condLabel = () => (state.info.conditional ? Number($("cond-class").value) : null);
const linspace = (n) => Array.from({ length: n }, (_, i) => (n === 1 ? 0 : i / (n - 1)));

// ---- downloads: any image, upscaled without smoothing ----------------------------------------------------
document.addEventListener("click", (e) => {
  const a = e.target.closest("a.dl");
  if (!a) return;
  e.preventDefault();
  const img = $(a.dataset.for);
  if (!img.src || !img.naturalWidth) return;
  const s = Math.max(1, Math.min(8, Math.round(512 / img.naturalWidth)));
  const c = document.createElement("canvas");
  c.width = img.naturalWidth * s; c.height = img.naturalHeight * s;
  const ctx = c.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0, c.width, c.height);
  c.toBlob((b) => {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(b);
    link.download = `${state.info.run}-${a.dataset.name}.png`;
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

function header(info) {
  $("run-name").textContent = info.run;
  document.title = `${info.run} — genzoo explorer`;
  const facts = [["model", info.model_type], ["data", info.data || "?"], ["image", info.image_shape.join("×")],
    ["latent", info.latent_dim ?? "–"], ["parameters", info.parameters], ["steps", info.steps ?? "?"],
    ["can", info.capabilities.join(", ")]];
  const val = info.validation || {};
  if (val["val/loss"] !== undefined) facts.push(["val loss", val["val/loss"]]);
  const dl = $("facts");
  for (const [k, v] of facts) {
    const d = document.createElement("div");
    d.innerHTML = "<dt></dt><dd></dd>";
    d.firstChild.textContent = k; d.lastChild.textContent = fmt(v);
    dl.appendChild(d);
  }
  const m = info.metrics;  // RUN/metrics.json, as `genzoo evaluate` writes it (or any JSON object)
  const rows = flatten(m && m.metrics && typeof m.metrics === "object" ? m.metrics : m, "", []);
  if (rows.length) {
    $("metrics-box").hidden = false;
    const about = m.metrics ? [m.n && `n = ${m.n}`, m.extractor && `extractor: ${m.extractor}`].filter(Boolean) : [];
    $("metrics-box").querySelector("summary").textContent = `metrics (${rows.length})${about.length ? " · " + about.join(", ") : ""}`;
    for (const [k, v] of rows) {
      const tr = $("metrics").insertRow();
      tr.insertCell().textContent = k; tr.insertCell().textContent = fmt(v);
    }
    if (typeof m.note === "string") $("metrics-note").textContent = m.note;
  }
  if (info.data_error) {
    $("notice").hidden = false;
    $("notice").textContent = `The test set could not be loaded, so only panels without it are shown: ${info.data_error}`;
  }
  if (info.conditional && info.classes) {
    fillClasses($("cond-class"), info.classes, false);
    $("conditioning").hidden = info.panels.every((p) => p === "samples");
  }
}

function fillClasses(select, classes, withMixed) {
  if (withMixed) select.add(new Option("mixed", ""));
  classes.forEach((c, i) => select.add(new Option(`${i}: ${c}`, String(i))));
}

// ---- samples ---------------------------------------------------------------------------------------------
function initSamples(info) {
  let seed = 0;
  const opts = info.sample_options;
  $("samples-temperature-box").hidden = !opts.includes("temperature");
  $("samples-truncation-box").hidden = !opts.includes("truncation");
  if (info.conditional && info.classes) { $("samples-class-box").hidden = false; fillClasses($("samples-class"), info.classes, true); }
  $("samples-steps-box").hidden = !opts.includes("steps");
  $("samples-guidance-box").hidden = !opts.includes("guidance");
  $("samples-trajectory-box").hidden = !info.trajectory;
  const update = live(async () => {
    const p = { n: 16, seed };
    if (opts.includes("temperature")) p.temperature = $("samples-temperature").value;
    if ($("samples-truncate").checked) p.truncation = $("samples-truncation").value;
    if (info.conditional && $("samples-class").value !== "") p.label = $("samples-class").value;
    if (opts.includes("steps")) p.steps = $("samples-steps").value;
    if (opts.includes("guidance")) p.guidance = $("samples-guidance").value;
    await showPng($("samples-img"), `/api/samples.png?${query(p)}`);
    if (info.trajectory) await showPng($("samples-trajectory"), `/api/trajectory.png?${query({ ...p, n: 4, frames: Math.min(10, Number(p.steps || 50) + 1), scale: 2 })}`);
  }, $("samples-error"));
  $("samples-steps").oninput = (e) => { $("samples-steps-out").value = e.target.value; update(); };
  $("samples-guidance").oninput = (e) => { $("samples-guidance-out").value = Number(e.target.value).toFixed(1); update(); };
  $("samples-reroll").onclick = () => { seed = Math.floor(Math.random() * 2 ** 31); update(); };
  $("samples-temperature").oninput = (e) => { $("samples-temperature-out").value = Number(e.target.value).toFixed(2); update(); };
  $("samples-truncate").onchange = (e) => {
    $("samples-truncation").disabled = !e.target.checked;
    $("samples-truncation-out").value = e.target.checked ? $("samples-truncation").value : "off";
    update();
  };
  $("samples-truncation").oninput = (e) => { $("samples-truncation-out").value = e.target.value; update(); };
  $("samples-class").onchange = update;
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

function toCanvas(canvas, x, y) {
  const [x0, x1, y0, y1] = state.map.bounds;
  return [((x - x0) / (x1 - x0)) * canvas.width, ((y1 - y) / (y1 - y0)) * canvas.height];
}

function fromEvent(canvas, e) {
  const r = canvas.getBoundingClientRect();
  const u = (e.clientX - r.left) / r.width, v = (e.clientY - r.top) / r.height;
  const [x0, x1, y0, y1] = state.map.bounds;
  return [x0 + u * (x1 - x0), y1 - v * (y1 - y0)];
}

function drawMap() {
  const canvas = $("map"), ctx = canvas.getContext("2d"), m = state.map;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!m) return;
  if (m.method === "latent") {  // the axes through the origin
    const [ox, oy] = toCanvas(canvas, 0, 0);
    ctx.strokeStyle = "#e3e6ea"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(ox, 0); ctx.lineTo(ox, canvas.height); ctx.moveTo(0, oy); ctx.lineTo(canvas.width, oy); ctx.stroke();
  }
  ctx.globalAlpha = 0.75;
  for (let i = 0; i < m.xy.length / 2; i++) {
    const [px, py] = toCanvas(canvas, m.xy[2 * i], m.xy[2 * i + 1]);
    ctx.fillStyle = m.labels ? PALETTE[m.labels[i] % PALETTE.length] : "#555";
    ctx.beginPath(); ctx.arc(px, py, 2.2, 0, 2 * Math.PI); ctx.fill();
  }
  ctx.globalAlpha = 1;
  const mark = (p, color, size) => {
    if (!p) return;
    const [px, py] = toCanvas(canvas, p[0], p[1]);
    ctx.strokeStyle = color; ctx.lineWidth = 2.5;
    ctx.beginPath(); ctx.moveTo(px - size, py - size); ctx.lineTo(px + size, py + size);
    ctx.moveTo(px + size, py - size); ctx.lineTo(px - size, py + size); ctx.stroke();
  };
  if (state.pin) { const [px, py] = toCanvas(canvas, ...state.pin); ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(px, py, 7, 0, 2 * Math.PI); ctx.stroke(); }
  if (state.drawing && state.drawing.xy && state.drawing.method === m.method) mark(state.drawing.xy, "#111", 8);
}

function legend(classes) {
  const box = $("map-legend");
  box.textContent = "";
  (classes || []).forEach((c, i) => {
    const s = document.createElement("span");
    s.textContent = c; s.style.setProperty("--c", PALETTE[i % PALETTE.length]);
    box.appendChild(s);
  });
}

async function loadMap(method) {
  $("map-status").textContent = method === "tsne" ? "computing t-SNE once (then cached in the run directory)…" : "encoding the test set…";
  try {
    const m = await getJson(`/api/map?${query({ method })}`);
    state.map = { method: m.method, xy: m.xy, labels: m.labels, bounds: mapBounds(m.method, m.bounds), classes: m.classes };
    state.method = method;
    $("map-status").textContent = `${m.xy.length / 2} test images · plane: ${METHOD_NAMES[m.method]}` +
      (m.method === "tsne" ? " (a point decodes as a weighted mean of its nearest codes)" : "");
    legend(m.classes);
    hideError($("map-error"));
  } catch (e) { $("map-status").textContent = ""; showError($("map-error"), e); }
  state.pin = null;
  drawMap();
  redrawDrawingPlace();
}

function initMap(info) {
  const canvas = $("map");
  if (info.map_methods.length > 1) {
    $("map-method-box").hidden = false;
    for (const m of info.map_methods) $("map-method").add(new Option(METHOD_NAMES[m] || m, m));
    $("map-method").onchange = (e) => loadMap(e.target.value);
  }
  const decodeAt = live(async (x, y) => {
    $("map-xy").textContent = `(${x.toFixed(2)}, ${y.toFixed(2)})`;
    await showPng($("map-img"), `/api/map/decode.png?${query({ method: state.method, x, y, label: condLabel() })}`);
  }, $("map-error"));
  canvas.addEventListener("pointermove", (e) => { if (state.map) decodeAt(...fromEvent(canvas, e)); });
  canvas.addEventListener("click", (e) => {
    if (!state.map) return;
    state.pin = fromEvent(canvas, e);
    drawMap();
    decodeAt(...state.pin);
  });
  canvas.addEventListener("pointerleave", () => { if (state.pin) decodeAt(...state.pin); });
  $("cond-class").addEventListener("change", () => { if (state.pin) decodeAt(...state.pin); });
  return loadMap(info.map_methods[0]);
}

// ---- draw or upload --------------------------------------------------------------------------------------
let drawingChanged = () => {};

async function redrawDrawingPlace() {
  const d = state.drawing;
  if (!d || !d.z || !state.map || d.method === state.method) return;
  // Place the drawing on the newly chosen plane by re-sending it.
  drawingChanged();
}

// The server takes PNG or JPEG bytes as image/png, image/jpeg or application/octet-stream.
const uploadType = (blob) => (["image/png", "image/jpeg"].includes(blob.type) ? blob.type : "application/octet-stream");

function initDraw(info) {
  const canvas = $("draw"), ctx = canvas.getContext("2d");
  const dark = info.background !== "light";
  const clear = () => { ctx.fillStyle = dark ? "#000" : "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  let last = null, source = null;  // source: the bytes of the last upload until someone draws over it
  const send = live(async (body) => {
    const p = { fit: $("draw-fit").checked, method: state.map ? state.method : null };
    const r = await getJson(`/api/encode?${query(p)}`, { method: "POST", headers: { "Content-Type": uploadType(body) }, body });
    setImage($("draw-input"), r.input);
    if (r.reconstruction) setImage($("draw-recon"), r.reconstruction);
    state.drawing = { z: r.z, xy: r.xy, method: p.method, image: r.input };
    $("draw-xy").textContent = r.xy ? `on the map at (${r.xy[0].toFixed(2)}, ${r.xy[1].toFixed(2)}) — the × mark` : "";
    drawMap();
    document.dispatchEvent(new Event("drawing"));
  }, $("draw-error"));
  const sendCanvas = () => canvas.toBlob((b) => send(b), "image/png");
  drawingChanged = () => (source ? send(source) : sendCanvas());
  const pos = (e) => { const r = canvas.getBoundingClientRect(); return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height]; };
  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    last = pos(e); source = null;
    ctx.fillStyle = dark ? "#fff" : "#000";
    ctx.beginPath(); ctx.arc(last[0], last[1], $("draw-pen").value / 2, 0, 2 * Math.PI); ctx.fill();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!last) return;
    const p = pos(e);
    ctx.strokeStyle = dark ? "#fff" : "#000"; ctx.lineWidth = $("draw-pen").value; ctx.lineCap = "round";
    ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(...p); ctx.stroke();
    last = p;
    sendCanvas();
  });
  const up = () => { if (last) { last = null; sendCanvas(); } };
  canvas.addEventListener("pointerup", up);
  canvas.addEventListener("pointercancel", up);
  $("draw-clear").onclick = () => { clear(); source = null; sendCanvas(); };
  $("draw-fit").onchange = () => drawingChanged();
  $("draw-upload").onchange = async (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (!file) return;
    source = file;
    send(file);
    try {  // show it on the canvas too, so one can draw over it
      const bmp = await createImageBitmap(file);
      clear();
      const s = Math.min(canvas.width / bmp.width, canvas.height / bmp.height);
      ctx.drawImage(bmp, (canvas.width - bmp.width * s) / 2, (canvas.height - bmp.height * s) / 2, bmp.width * s, bmp.height * s);
    } catch (_) { /* the server's message says what is wrong with the file */ }
  };
}

// ---- picking an image: a test image or the drawing -------------------------------------------------------
function picker(el, onChange) {
  const parts = $("picker").content.cloneNode(true);  // select, index, random button, thumbnail
  el.insertBefore(parts, el.querySelector("button:not(.rand)"));
  const src = el.querySelector(".src"), index = el.querySelector(".index"), thumb = el.querySelector("img");
  index.value = el.dataset.index || "0";
  index.max = String(state.info.test_size - 1);
  const sync = () => { index.hidden = src && src.value !== "test"; el.querySelector(".rand").hidden = index.hidden; };
  if (src) src.onchange = () => { sync(); onChange(); };
  index.onchange = onChange;
  el.querySelector(".rand").onclick = () => { index.value = String(Math.floor(Math.random() * state.info.test_size)); onChange(); };
  document.addEventListener("drawing", () => { if (src && src.value === "drawing") onChange(); });
  sync();
  return async () => {  // -> the chosen image's latent code
    if (src && src.value === "drawing") {
      if (!state.drawing || !state.drawing.z) throw new Error("draw or upload an image first (panel “Draw or upload”)");
      if (thumb) setImage(thumb, state.drawing.image);
      return state.drawing.z;
    }
    const i = Number(index.value);
    const r = await getJson(`/api/code?${query({ index: i })}`);
    if (thumb) await showPng(thumb, `/api/test.png?${query({ index: i })}`);
    return r.z;
  };
}

// ---- interpolate -----------------------------------------------------------------------------------------
function initInterpolate() {
  let ends = null;
  const t = () => Number($("interp-t").value) / 100;
  const frame = live(async () => {
    if (!ends) return;
    $("interp-t-out").value = t().toFixed(2);
    await showPng($("interp-frame"), "/api/interpolate.png", postJson({ a: ends[0], b: ends[1], mode: $("interp-mode").value, ts: [t()], label: condLabel() }));
  }, $("interp-error"));
  const update = live(async () => {
    ends = [await codeA(), await codeB()];
    const steps = Math.max(2, Math.min(16, Number($("interp-steps").value) || 8));
    await showPng($("interp-strip"), "/api/interpolate.png", postJson({ a: ends[0], b: ends[1], mode: $("interp-mode").value, ts: linspace(steps), label: condLabel() }));
    await frame();
  }, $("interp-error"));
  const codeA = picker($("interp-a"), update), codeB = picker($("interp-b"), update);
  $("interp-mode").onchange = update;
  $("interp-steps").onchange = update;
  $("interp-t").oninput = frame;
  $("cond-class").addEventListener("change", update);
  update();
}

// ---- attributes ------------------------------------------------------------------------------------------
function initAttributes(info) {
  let z = null;
  const box = $("attr-sliders");
  info.classes.forEach((c, i) => {
    const label = document.createElement("span"); label.textContent = c;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: "-3", max: "3", step: "0.1", value: "0" });
    input.dataset.cls = String(i);
    input.setAttribute("aria-label", `towards ${c}`);
    const out = document.createElement("output"); out.value = "0.0";
    input.oninput = () => { out.value = Number(input.value).toFixed(1); render(); };
    box.append(label, input, out);
  });
  const alphas = () => Object.fromEntries([...box.querySelectorAll("input")].filter((s) => Number(s.value) !== 0).map((s) => [s.dataset.cls, Number(s.value)]));
  const render = live(async () => {
    if (!z) return;
    await showPng($("attr-img"), "/api/attributes.png", postJson({ z, alphas: alphas(), label: condLabel() }));
  }, $("attr-error"));
  const pick = picker($("attr-src"), live(async () => {
    z = await pick();
    await showPng($("attr-orig"), "/api/decode.png", postJson({ z: [z], label: condLabel() }));
    await render();
  }, $("attr-error")));
  $("attr-reset").onclick = () => { box.querySelectorAll("input").forEach((s) => { s.value = "0"; s.nextSibling.value = "0.0"; }); render(); };
  $("cond-class").addEventListener("change", () => $("attr-src").querySelector(".index").onchange());
  $("attr-src").querySelector(".index").onchange();
}

// ---- denoise ---------------------------------------------------------------------------------------------
function initDenoise(info) {
  const index = $("denoise-src").querySelector(".index");
  index.max = String(info.test_size - 1);
  const update = live(async () => {
    $("denoise-level-out").value = Number($("denoise-level").value).toFixed(2);
    await showPng($("denoise-img"), `/api/denoise.png?${query({ index: index.value, noise: $("denoise-level").value })}`);
  }, $("denoise-error"));
  index.onchange = update;
  $("denoise-src").querySelector(".rand").onclick = () => { index.value = String(Math.floor(Math.random() * info.test_size)); update(); };
  $("denoise-level").oninput = update;
  if (info.noise) {  // [kind, level]: start at the level the model was trained with
    $("denoise-level").value = String(Math.min(1, info.noise[1]));
    $("denoise-kind").textContent = info.noise[0] === "gaussian" ? "noise σ" : `${info.noise[0]} probability`;
  }
  update();
}

// ---- start -----------------------------------------------------------------------------------------------
async function main() {
  let info;
  try { info = await getJson("/api/info"); } catch (e) { $("notice").hidden = false; $("notice").textContent = `cannot reach the explorer: ${e.message}`; return; }
  state.info = info;
  header(info);
  for (const p of info.panels) $(`panel-${p}`).hidden = false;
  const has = (p) => info.panels.includes(p);
  if (has("samples")) initSamples(info);
  if (has("map")) await initMap(info);
  if (has("draw")) initDraw(info);
  if (has("interpolate")) initInterpolate(info);
  if (has("attributes")) initAttributes(info);
  if (has("denoise")) initDenoise(info);
  document.body.dataset.ready = "true";
}

main();
