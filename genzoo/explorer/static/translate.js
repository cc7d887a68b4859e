// genzoo explorer: the translate panel (pix2pix, srgan, cyclegan, ...), one per view like the other panels
// (run B's ids end in -r1). Loaded after pen.js and before app.js, which calls initTranslate(v) for each view
// whose run has the "translate" panel; it uses app.js's helpers (getJson, live, setImage, uploadType, emit).
// Linked with the other run's panel: the same test index and the same upload.
"use strict";

async function initTranslate(v) {
  const info = v.info, $ = v.$;
  const t = await getJson(v.url("/api/translate/info"));
  const dark = info.background !== "light";
  const canvas = $("tr-draw");
  if (t.derive) { $("tr-derive-box").hidden = false; $("tr-derive-label").textContent = t.derive_label; }
  const doms = t.domains || {};
  if (t.directions.length > 1) {
    $("tr-direction-box").hidden = false;
    $("tr-direction").innerHTML = "";
    for (const d of t.directions) {
      const o = document.createElement("option"), m = doms[d];
      o.value = d; o.textContent = m ? `${m.source} → ${m.target} (${d})` : d;
      $("tr-direction").appendChild(o);
    }
  }
  $("tr-blend-box").hidden = !t.super_resolution;
  if (!t.super_resolution) { $("tr-under").hidden = true; $("tr-output").style.position = "static"; }
  $("tr-bicubic-fig").hidden = !t.super_resolution;
  const direction = () => (t.directions.length > 1 ? $("tr-direction").value : null);
  // the chosen direction's domains: captions, and the test images of its source domain
  const domain = () => doms[direction() || t.directions[0]] || { source: "source", target: "output", test_size: info.test_size };
  const labelDomains = () => {
    const m = domain(), named = t.directions.length > 1;
    $("tr-source-cap").textContent = named ? `source (${m.source})` : "source";
    $("tr-output-cap").textContent = named ? `output (${m.target})` : "output";
    $("tr-domains").textContent = named ? `test images, drawing and upload are ${m.source}; the output is ${m.target}` : "";
    $("tr-index").max = Math.max(0, m.test_size - 1);
    if (Number($("tr-index").value) > m.test_size - 1) $("tr-index").value = Math.max(0, m.test_size - 1);
  };
  labelDomains();

  // SR: the slider blends bicubic (0) and the model (1) by stacking the two images.
  const blend = () => {
    const a = Number($("tr-blend").value) / 100;
    $("tr-blend-out").value = a.toFixed(2);
    $("tr-output").style.opacity = t.super_resolution ? String(a) : "1";
  };
  $("tr-blend").oninput = blend;

  const show = (r) => {
    setImage($("tr-source"), r.source);
    setImage($("tr-output"), r.output);
    if (r.bicubic) { setImage($("tr-under"), r.bicubic); setImage($("tr-bicubic"), r.bicubic); }
    $("tr-target-fig").hidden = !r.target;
    if (r.target) setImage($("tr-target"), r.target);
    blend();
  };
  let onTest = true;  // what the direction selector re-runs: the test image, or the drawing / upload
  const fromTest = live(async () => {
    onTest = true;
    show(await getJson(v.url("/api/translate/test", { index: Number($("tr-index").value), direction: direction() })));
  }, $("tr-error"));
  const send = live(async (body) => {
    onTest = false;
    const p = { fit: $("tr-fit").checked, derive: t.derive ? $("tr-derive").checked : null, direction: direction() };
    show(await getJson(v.url("/api/translate", p), { method: "POST", headers: { "Content-Type": uploadType(body) }, body }));
  }, $("tr-error"));
  let source = null;
  const encode = orderedBlobs(canvas);
  const sendCanvas = () => encode((b) => send(b));
  const resend = () => (source ? send(source) : sendCanvas());

  // the pen (pen.js, shared with the Draw panel)
  const board = pen(canvas, { dark, width: () => $("tr-pen").value, onStart: () => { source = null; }, onStroke: sendCanvas });
  $("tr-clear").onclick = () => { board.clear(); source = null; };
  $("tr-fit").onchange = resend;
  $("tr-derive").onchange = resend;
  $("tr-direction").onchange = () => { labelDomains(); return onTest ? fromTest() : resend(); };
  const toIndex = (i) => {  // a test index given here or in the twin panel (clamped to this run's domain)
    $("tr-index").value = String(Math.min(Math.max(0, i), Math.max(0, domain().test_size - 1)));
    fromTest();
  };
  $("tr-index").onchange = () => { fromTest(); emit("tr-index", v, Number($("tr-index").value)); };
  $("tr-rand").onclick = () => {
    const i = Math.floor(Math.random() * Math.max(1, domain().test_size));
    toIndex(i);
    emit("tr-index", v, i);
  };
  v.on["tr-index"] = toIndex;
  const useFile = async (file) => { source = file; send(file); await board.showFile(file); };
  $("tr-upload").onchange = async (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (!file) return;
    emit("tr-upload", v, file);
    await useFile(file);
  };
  v.on["tr-upload"] = useFile;
  if (domain().test_size > 0) fromTest();
}
