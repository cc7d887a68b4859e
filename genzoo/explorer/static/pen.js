// genzoo explorer: the pen, drawing on a canvas with the mouse or a finger. Used by the Draw panel (app.js) and
// the Translate panel (translate.js); loaded before both.
"use strict";

// Make `canvas` drawable: ink white on black when `dark`, else black on white; `width()` is the pen's width in
// canvas pixels. `onStart()` runs when a stroke begins, `onStroke()` while it moves and once when it ends.
// Returns { ctx, clear(), showFile(file) } (showFile draws an uploaded image on the canvas, fitted and centred,
// so that one can draw over it).
function pen(canvas, { dark, width, onStart, onStroke }) {
  const ctx = canvas.getContext("2d");
  const ink = dark ? "#fff" : "#000";
  const clear = () => { ctx.fillStyle = dark ? "#000" : "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  const pos = (e) => { const r = canvas.getBoundingClientRect(); return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height]; };
  let last = null;
  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    last = pos(e);
    if (onStart) onStart();
    ctx.fillStyle = ink;
    ctx.beginPath(); ctx.arc(last[0], last[1], width() / 2, 0, 2 * Math.PI); ctx.fill();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!last) return;
    const p = pos(e);
    ctx.strokeStyle = ink; ctx.lineWidth = width(); ctx.lineCap = "round";
    ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(...p); ctx.stroke();
    last = p;
    onStroke();
  });
  const up = () => { if (last) { last = null; onStroke(); } };
  canvas.addEventListener("pointerup", up);
  canvas.addEventListener("pointercancel", up);
  const showFile = async (file) => {
    try {
      const bmp = await createImageBitmap(file);
      clear();
      const s = Math.min(canvas.width / bmp.width, canvas.height / bmp.height);
      ctx.drawImage(bmp, (canvas.width - bmp.width * s) / 2, (canvas.height - bmp.height * s) / 2, bmp.width * s, bmp.height * s);
    } catch (_) { /* the server's message says what is wrong with the file */ }
  };
  return { ctx, clear, showFile };
}

// `canvas.toBlob` as PNG, in call order: `encode(cb)` calls cb with the picture, and drops a picture that comes
// back after a later call's (the encoder may finish out of order, and a stroke's last picture must be the one
// sent). document.body.dataset.encoding counts the pictures asked for and not yet back (the tests wait for 0).
function orderedBlobs(canvas) {
  let asked = 0, delivered = 0;
  const count = (d) => { document.body.dataset.encoding = String(Number(document.body.dataset.encoding || 0) + d); };
  return (cb) => {
    const n = ++asked;
    count(1);
    canvas.toBlob((b) => {
      count(-1);
      if (n < delivered) return;
      delivered = n;
      cb(b);
    }, "image/png");
  };
}
