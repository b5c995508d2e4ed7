// nii review front end: plain JavaScript, no framework, no network beyond this server.
"use strict";

const $ = (s) => document.querySelector(s);
const LAYER_NAMES = { color: "pseudo-colour", high: "high", low: "low", organic: "organic only", metal: "metal only", zeff: "Zeff" };
const CLASS_RGB = { ivory: "rgb(255,215,0)", ivory_worked: "rgb(255,140,0)", pangolin_scales: "rgb(220,20,60)", rhino_horn: "rgb(180,0,180)" };
const ANOMALY_RGB = "rgb(0,230,230)";

const S = {
  config: null, queue: [], queueSel: 0, scan: null, key: null, sel: 0, layer: "color",
  scale: 1, tx: 0, ty: 0, imgW: 0, imgH: 0, drawing: false, drag: null, pending: null, relabeling: false,
};

function classColor(name) {
  if (CLASS_RGB[name]) return CLASS_RGB[name];
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360},85%,55%)`;
}
function esc(s) { return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }
function toast(msg, bad) {
  const t = $("#toast"); t.textContent = msg; t.className = "show" + (bad ? " bad" : "");
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.className = ""; }, 2200);
}

async function api(path, opts = {}) {
  const init = { credentials: "same-origin", ...opts, headers: { Accept: "application/json", ...(opts.headers || {}) } };
  if (opts.json !== undefined) { init.method = init.method || "POST"; init.body = JSON.stringify(opts.json); init.headers["Content-Type"] = "application/json"; }
  const r = await fetch(path, init);
  if (r.status === 401 && S.config && S.config.auth_required && !path.startsWith("/api/login")) { showLogin(); throw new Error("sign in first"); }
  const body = (r.headers.get("content-type") || "").includes("json") ? await r.json() : null;
  if (!r.ok) throw new Error((body && body.detail) ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : `HTTP ${r.status}`);
  return body;
}

function showLogin() { $("#login").hidden = false; $("#token").focus(); }

// ---------------------------------------------------------------- queue
async function loadQueue() {
  const p = new URLSearchParams();
  for (const [id, k] of [["#f-alarm", "alarm"], ["#f-reviewed", "reviewed"], ["#f-class", "cls"], ["#f-q", "q"]]) { const v = $(id).value; if (v) p.set(k, v); }
  const data = await api("/api/scans?" + p.toString());
  S.queue = data.scans;
  const cls = $("#f-class"), cur = cls.value;
  cls.innerHTML = '<option value="">any</option>' + data.classes.map((c) => `<option>${esc(c)}</option>`).join("");
  cls.value = cur;
  $("#classlist").innerHTML = data.classes.map((c) => `<option value="${esc(c)}">`).join("");
  $("#count").textContent = `${S.queue.length} of ${data.total} scan(s)`;
  S.queueSel = Math.min(S.queueSel, Math.max(0, S.queue.length - 1));
  renderQueue();
}

function renderQueue() {
  const ol = $("#queue");
  ol.innerHTML = S.queue.map((s, i) => `
    <li data-key="${esc(s.key)}" class="${i === S.queueSel ? "sel" : ""}">
      <img loading="lazy" src="/api/scans/${encodeURIComponent(s.key)}/thumb.png" alt="">
      <div class="row"><strong class="sid">${esc(s.scan_id)}</strong>
        <span class="badge ${s.alarm ? "alarm" : "clear"}">${s.alarm ? "ALARM " + s.n_detections : "clear"}</span></div>
      <div class="row"><span>${esc(s.classes.join(", ") || "-")}${s.max_confidence != null ? " · " + s.max_confidence.toFixed(2) : ""}</span>
        <span class="badge ${s.verdict ? "v-" + s.verdict : "none"}">${esc(s.verdict || "not reviewed")}</span></div>
      <div class="row"><small>${esc(s.acquired_at || s.processed_at || "")}</small></div>
    </li>`).join("");
  for (const li of ol.children) li.addEventListener("click", () => { location.hash = "#/scan/" + encodeURIComponent(li.dataset.key); });
}

// ---------------------------------------------------------------- viewer
async function openScan(key) {
  const data = await api("/api/scans/" + encodeURIComponent(key));
  const sameScan = S.key === key;
  S.scan = data; S.key = key;
  if (!sameScan) { S.sel = 0; S.pending = null; S.layer = "color"; loadLayer(true); }
  $("#crumb").textContent = data.report.scan_id;
  renderSide(); renderOverlay();
}

function loadLayer(fit) {
  const img = $("#scanimg");
  img.onload = () => {
    S.imgW = img.naturalWidth; S.imgH = img.naturalHeight;
    const svg = $("#overlay");
    svg.setAttribute("width", S.imgW); svg.setAttribute("height", S.imgH); svg.setAttribute("viewBox", `0 0 ${S.imgW} ${S.imgH}`);
    if (fit) fitView();
    renderOverlay();
    $("#status").textContent = `${S.scan.report.scan_id} — ${LAYER_NAMES[S.layer]} — ${S.imgW}×${S.imgH} px`;
  };
  img.onerror = () => toast(`layer ${LAYER_NAMES[S.layer]} not available for this scan`, true);
  img.src = `/api/scans/${encodeURIComponent(S.key)}/layers/${S.layer}.png`;
  for (const b of document.querySelectorAll("#layers button")) b.classList.toggle("active", b.dataset.layer === S.layer);
}

function setLayer(l) { if (S.layer !== l) { S.layer = l; loadLayer(false); } }

function applyTransform() {
  $("#stage").style.transform = `translate(${S.tx}px, ${S.ty}px) scale(${S.scale})`;
  $("#zoomlabel").textContent = Math.round(S.scale * 100) + "%";
  for (const t of document.querySelectorAll("#overlay text")) t.setAttribute("font-size", (13 / S.scale).toFixed(3));
  for (const t of document.querySelectorAll("#overlay text")) t.style.strokeWidth = (3 / S.scale) + "px";
  for (const t of document.querySelectorAll("#overlay text")) { const y0 = +t.dataset.y0; t.setAttribute("y", t.dataset.below ? y0 + 16 / S.scale : y0 - 4 / S.scale); }
  placeLabels();
}
// Labels in report order (model flags first, then anomalies, then missed boxes): a label that would
// cover one already placed moves down a line at a time (at most 8), so none hides another.
function placeLabels() {
  const texts = [...document.querySelectorAll("#overlay text")];
  if (!texts.length || !texts[0].getBBox) return;
  const hits = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
  const placed = texts.filter((t) => t.dataset.below).map((t) => t.getBBox());
  const step = 16 / S.scale;
  for (const t of texts) {
    if (t.dataset.below) continue;
    let y = +t.getAttribute("y");
    for (let k = 0; k < 8 && placed.some((p) => hits(t.getBBox(), p)); k++) { y += step; t.setAttribute("y", y); }
    placed.push(t.getBBox());
  }
}
function fitView() {
  const vp = $("#viewport").getBoundingClientRect();
  if (!S.imgW) return;
  S.scale = Math.min(vp.width / S.imgW, vp.height / S.imgH) * 0.98;
  S.tx = (vp.width - S.imgW * S.scale) / 2; S.ty = (vp.height - S.imgH * S.scale) / 2;
  applyTransform();
}
function zoomAt(f, cx, cy) {
  const vp = $("#viewport").getBoundingClientRect();
  if (cx === undefined) { cx = vp.width / 2; cy = vp.height / 2; }
  const ns = Math.min(32, Math.max(0.05, S.scale * f));
  S.tx = cx - (cx - S.tx) * (ns / S.scale); S.ty = cy - (cy - S.ty) * (ns / S.scale); S.scale = ns;
  applyTransform();
}
function oneToOne() { zoomAt(1 / S.scale); }
function toImage(ev) {
  const vp = $("#viewport").getBoundingClientRect();
  return [(ev.clientX - vp.left - S.tx) / S.scale, (ev.clientY - vp.top - S.ty) / S.scale];
}

function detState(i) { return S.scan.state.detections[String(i)] || null; }

function svgEl(tag, attrs) { const e = document.createElementNS("http://www.w3.org/2000/svg", tag); for (const k in attrs) e.setAttribute(k, attrs[k]); return e; }

function renderOverlay() {
  const svg = $("#overlay");
  svg.innerHTML = "";
  if (!S.scan || !$("#showboxes").checked) return;
  S.scan.report.detections.forEach((d, i) => {
    const [x0, y0, x1, y1] = d.box_px;
    const st = detState(i);
    const anomaly = d.origin === "material_anomaly";
    const color = anomaly ? ANOMALY_RGB : classColor(st && st.action === "relabel" ? st.label : d.class);
    const g = svgEl("g", { "data-index": i, class: "detbox" });
    g.appendChild(svgEl("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0, class: "halo" }));
    const cls = ["det"]; if (anomaly) cls.push("anomaly"); if (i === S.sel) cls.push("sel"); if (st && st.action === "reject") cls.push("rejected");
    g.appendChild(svgEl("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0, class: cls.join(" "), stroke: color, "data-index": i }));
    const label = (anomaly ? "anomaly: " : "") + (st && st.action === "relabel" ? st.label + " (was " + d.class + ")" : d.class) + " " + d.confidence.toFixed(2) + (st ? { confirm: "  ✓ confirmed", reject: "  ✗ false alarm", relabel: "" }[st.action] : "");
    const t = svgEl("text", { x: x0, y: y0, fill: color, "data-y0": y0 });
    t.textContent = label;
    g.appendChild(t);
    if (i === S.sel) {
      const ev = evidenceLine(d.evidence);
      if (ev) { const e2 = svgEl("text", { x: x0, y: y1, fill: color, "data-y0": y1, "data-below": "1", class: "evidence" }); e2.textContent = ev; g.appendChild(e2); }
    }
    svg.appendChild(g);
  });
  for (const m of S.scan.state.missed) {
    const [x0, y0, x1, y1] = m.box;
    svg.appendChild(svgEl("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0, class: "missed" }));
    const t = svgEl("text", { x: x0, y: y0, fill: "#00e5ff", "data-y0": y0 }); t.textContent = "missed: " + m.label; svg.appendChild(t);
  }
  if (S.pending) {
    const [x0, y0, x1, y1] = S.pending;
    svg.appendChild(svgEl("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0, class: "pending" }));
  }
  // labels over every box (in report order), each still selecting its detection when clicked
  for (const t of [...svg.querySelectorAll("text")]) {
    const owner = t.parentNode.dataset && t.parentNode.dataset.index;
    if (owner !== undefined) t.setAttribute("data-index", owner);
    svg.appendChild(t);
  }
  applyTransform();
}

const EVIDENCE_LABELS = [
  ["zeff_median", "Zeff", 1], ["areal_density_median_g_cm2", "areal density", 1, " g/cm²"], ["areal_density_g_cm2", "areal density", 1, " g/cm²"],
  ["frac_bone_like", "bone-like", 0, "%"], ["frac_dense_organic", "dense organic", 0, "%"], ["frac_metal", "metal", 0, "%"],
];
function evidenceLine(ev) {
  ev = ev || {};
  const parts = [];
  if (typeof ev.zeff_median === "number") parts.push(`Zeff ${ev.zeff_median.toFixed(1)}`);
  const rho = ev.areal_density_median_g_cm2 ?? ev.areal_density_g_cm2;
  if (typeof rho === "number") parts.push(`${rho.toFixed(1)} g/cm²`);
  return parts.join(" · ");
}
function fmtEvidence(ev) {
  ev = ev || {};
  const parts = [];
  for (const [k, name, digits, unit] of EVIDENCE_LABELS) {
    const v = ev[k];
    if (typeof v !== "number") continue;
    parts.push(unit === "%" ? `${name} ${Math.round(v * 100)}%` : `${name} ${v.toFixed(digits)}${unit || ""}`);
  }
  let html = esc(parts.join(" · "));
  if (typeof ev.material_hint === "string") html += `<br><em>${esc(ev.material_hint)}</em>`;
  return html;
}

// "model NAME at FAR x %" from the report's provenance (the `detect` step), with the thresholds as a tooltip.
function modelLine(r) {
  const steps = ((r.provenance || {}).steps || []).filter((s) => s.name === "detect");
  if (!steps.length) return "";
  const p = steps[steps.length - 1].params || {};
  const thr = Object.entries(p.thresholds || {}).map(([c, t]) => `${c} ${Number(t).toFixed(3)}`).join(", ");
  const far = typeof p.far === "number" ? ` at FAR ${+(p.far * 100).toFixed(2)} %` : "";
  return ` · <span class="model" title="${esc("thresholds: " + thr + " · sha256 " + (p.model_sha256 || ""))}">model ${esc(p.model || "?")}${esc(far)}</span>`;
}

function renderSide() {
  const r = S.scan.report;
  $("#scanhead").innerHTML = `<h2>${esc(r.scan_id)} <span class="badge ${r.alarm ? "alarm" : "clear"}">${r.alarm ? "ALARM" : "clear"}</span></h2>
    <small>${esc(r.acquired_at || r.processed_at)} · ${esc((r.scanner || {}).profile || "unknown profile")} · nii ${esc(r.nii_version)}${modelLine(r)}</small>`;
  const dl = $("#detlist");
  if (!r.detections.length) dl.innerHTML = "<li>No detections.</li>";
  else dl.innerHTML = r.detections.map((d, i) => {
    const st = detState(i);
    const color = d.origin === "material_anomaly" ? ANOMALY_RGB : classColor(d.class);
    const state = st ? `<span class="state ${st.action}">${st.action === "relabel" ? "relabelled → " + esc(st.label) : st.action === "confirm" ? "confirmed" : "rejected (false alarm)"} · ${esc(st.operator)}</span>` : '<span class="state">undecided</span>';
    return `<li data-index="${i}" class="det ${i === S.sel ? "sel" : ""}">
      <div><span class="swatch" data-color="${esc(color)}"></span><strong class="cls">${esc(d.class)}</strong> ${d.confidence.toFixed(2)}
        <small>${d.origin === "material_anomaly" ? "material anomaly" : "model"}</small></div>
      <div class="ev">${fmtEvidence(d.evidence)}</div>
      <div>${state}</div>
      <div class="acts"><button data-act="confirm" title="c">confirm</button><button data-act="reject" title="x">reject</button><button data-act="relabel" title="r">relabel</button></div>
    </li>`;
  }).join("");
  for (const sw of dl.querySelectorAll(".swatch")) sw.style.background = sw.dataset.color;  // CSSOM: allowed by the CSP
  for (const li of dl.querySelectorAll("li.det")) {
    li.addEventListener("click", (ev) => {
      S.sel = +li.dataset.index;
      const act = ev.target.dataset && ev.target.dataset.act;
      if (act === "relabel") startRelabel(); else if (act) decideDetection(act); else { renderSide(); renderOverlay(); }
    });
  }
  const ml = $("#missedlist");
  ml.innerHTML = S.scan.state.missed.length ? S.scan.state.missed.map((m) => `<li>${esc(m.label)} [${m.box.map((v) => Math.round(v)).join(", ")}] · ${esc(m.operator)} <button data-ref="${m.id}">withdraw</button></li>`).join("") : "<li><small>none (press b to draw)</small></li>";
  for (const b of ml.querySelectorAll("button[data-ref]")) b.addEventListener("click", () => post({ kind: "missed", action: "withdraw", ref_id: +b.dataset.ref }));
  const v = S.scan.state.verdict;
  for (const b of document.querySelectorAll("#verdicts button")) b.classList.toggle("active", !!v && v.action === b.dataset.verdict);
  $("#verdictnow").innerHTML = v ? `verdict <strong>${esc(v.action)}</strong> by ${esc(v.operator)} at ${esc(v.created_at)}` : "<small>no verdict yet</small>";
  $("#history").innerHTML = S.scan.history.slice().reverse().map((h) =>
    `<li>${esc(h.created_at)} · <strong>${esc(h.operator)}</strong> · ${esc(h.kind)} ${esc(h.action)}${h.detection_index != null ? " #" + h.detection_index : ""}${h.label ? " → " + esc(h.label) : ""}${h.note ? " — " + esc(h.note) : ""}${h.report_sha256 && h.report_sha256 !== S.scan.report_sha256 ? ' <em title="made on an earlier version of this report">(earlier report)</em>' : ""}</li>`).join("");
  const li = dl.querySelector("li.sel"); if (li && li.scrollIntoView) li.scrollIntoView({ block: "nearest" });
}

function operator() {
  const o = $("#operator").value.trim();
  if (!o) { toast("enter your operator name first", true); $("#operator").focus(); return null; }
  return o;
}

async function post(body) {
  const op = operator(); if (!op) return false;
  try {
    await api(`/api/scans/${encodeURIComponent(S.key)}/decisions`, { json: { ...body, operator: op } });
    await openScan(S.key);
    return true;
  } catch (e) { toast(e.message, true); return false; }
}

async function decideDetection(action, label) {
  const n = S.scan.report.detections.length;
  if (!n) return;
  const ok = await post({ kind: "detection", action, detection_index: S.sel, label: label || null });
  if (ok) { toast(`detection ${S.sel + 1}: ${action}`); if (S.sel < n - 1) { S.sel += 1; renderSide(); renderOverlay(); } }
}

function startRelabel() {
  if (!S.scan.report.detections.length) return;
  $("#relabelbox").hidden = false; const i = $("#relabel"); i.value = ""; i.focus();
}
async function finishRelabel() {
  const label = $("#relabel").value.trim();
  if (!label) { toast("type the new class", true); return; }
  $("#relabelbox").hidden = true;
  await decideDetection("relabel", label);
}

function setDrawing(on) { S.drawing = on; $("#viewport").classList.toggle("drawing", on); $("#draw").classList.toggle("active", on); }

async function addPending() {
  const label = $("#pendinglabel").value.trim();
  if (!label) { toast("type the class of the missed object", true); return; }
  const ok = await post({ kind: "missed", action: "add", box: S.pending, label });
  if (ok) { S.pending = null; $("#pendingbox").hidden = true; renderOverlay(); toast("missed box added"); }
}

async function verdict(v) { if (await post({ kind: "verdict", action: v })) { toast("verdict: " + v); } }

// ---------------------------------------------------------------- routing and events
async function route() {
  const m = location.hash.match(/^#\/scan\/(.+)$/);
  try {
    if (m) {
      $("#queueview").hidden = true; $("#viewerview").hidden = false;
      await openScan(decodeURIComponent(m[1]));
    } else {
      $("#viewerview").hidden = true; $("#queueview").hidden = false; $("#crumb").textContent = "queue"; S.key = null;
      await loadQueue();
    }
  } catch (e) { toast(e.message, true); }
}

function stepScan(d) {
  if (!S.queue.length) return;
  let i = S.queue.findIndex((s) => s.key === S.key);
  i = Math.min(S.queue.length - 1, Math.max(0, i + d));
  location.hash = "#/scan/" + encodeURIComponent(S.queue[i].key);
}

function onKey(ev) {
  const tag = (ev.target.tagName || "").toLowerCase();
  if (tag === "input" || tag === "textarea" || tag === "select") {
    if (ev.key === "Escape") ev.target.blur();
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const k = ev.key;
  if (k === "?") { $("#help").hidden = !$("#help").hidden; return; }
  if (!$("#help").hidden && k === "Escape") { $("#help").hidden = true; return; }
  const inViewer = !$("#viewerview").hidden;
  if (!inViewer) {
    if (k === "j" || k === "ArrowDown") { S.queueSel = Math.min(S.queue.length - 1, S.queueSel + 1); renderQueue(); }
    else if (k === "k" || k === "ArrowUp") { S.queueSel = Math.max(0, S.queueSel - 1); renderQueue(); }
    else if (k === "Enter" && S.queue[S.queueSel]) location.hash = "#/scan/" + encodeURIComponent(S.queue[S.queueSel].key);
    else return;
    ev.preventDefault(); return;
  }
  const n = S.scan ? S.scan.report.detections.length : 0;
  const layerKeys = { 1: "color", 2: "high", 3: "low", 4: "organic", 5: "metal", 6: "zeff" };
  if (layerKeys[k]) setLayer(layerKeys[k]);
  else if (k === "j" || k === "ArrowDown") { if (n) { S.sel = Math.min(n - 1, S.sel + 1); renderSide(); renderOverlay(); } }
  else if (k === "k" || k === "ArrowUp") { if (n) { S.sel = Math.max(0, S.sel - 1); renderSide(); renderOverlay(); } }
  else if (k === "c") decideDetection("confirm");
  else if (k === "x") decideDetection("reject");
  else if (k === "r") startRelabel();
  else if (k === "b") setDrawing(!S.drawing);
  else if (k === "C") verdict("clear");
  else if (k === "I") verdict("inspect");
  else if (k === "S") verdict("seize");
  else if (k === "t") $("#note").focus();
  else if (k === "n") stepScan(1);
  else if (k === "p") stepScan(-1);
  else if (k === "+" || k === "=") zoomAt(1.25);
  else if (k === "-") zoomAt(0.8);
  else if (k === "0") fitView();
  else if (k === ".") oneToOne();
  else if (k === "o") { $("#showboxes").checked = !$("#showboxes").checked; renderOverlay(); }
  else if (k === "Escape") { if (S.drawing || S.pending) { setDrawing(false); S.pending = null; $("#pendingbox").hidden = true; renderOverlay(); } else location.hash = "#/"; }
  else return;
  ev.preventDefault();
}

function initViewport() {
  const vp = $("#viewport");
  vp.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const r = vp.getBoundingClientRect();
    zoomAt(ev.deltaY < 0 ? 1.15 : 1 / 1.15, ev.clientX - r.left, ev.clientY - r.top);
  }, { passive: false });
  vp.addEventListener("mousedown", (ev) => {
    if (ev.button !== 0) return;
    vp.focus();
    const hit = ev.target.closest && ev.target.closest("#overlay [data-index]");
    if (hit && !S.drawing) { S.sel = +hit.dataset.index; renderSide(); renderOverlay(); return; }
    if (S.drawing) { const [x, y] = toImage(ev); S.drag = { mode: "draw", x, y }; S.pending = [x, y, x, y]; }
    else { S.drag = { mode: "pan", x: ev.clientX, y: ev.clientY, tx: S.tx, ty: S.ty }; vp.classList.add("panning"); }
  });
  window.addEventListener("mousemove", (ev) => {
    if (!S.drag) return;
    if (S.drag.mode === "pan") { S.tx = S.drag.tx + ev.clientX - S.drag.x; S.ty = S.drag.ty + ev.clientY - S.drag.y; applyTransform(); }
    else {
      const [x, y] = toImage(ev);
      const cx = (v, m) => Math.max(0, Math.min(m, v));
      S.pending = [cx(Math.min(S.drag.x, x), S.imgW), cx(Math.min(S.drag.y, y), S.imgH), cx(Math.max(S.drag.x, x), S.imgW), cx(Math.max(S.drag.y, y), S.imgH)];
      renderOverlay();
    }
  });
  window.addEventListener("mouseup", () => {
    if (!S.drag) return;
    const mode = S.drag.mode; S.drag = null; vp.classList.remove("panning");
    if (mode === "draw") {
      setDrawing(false);
      const [x0, y0, x1, y1] = S.pending;
      if (x1 - x0 < 2 || y1 - y0 < 2) { S.pending = null; renderOverlay(); return; }
      S.pending = [x0, y0, x1, y1].map((v) => Math.round(v * 10) / 10);
      $("#pendingcoords").textContent = `[${S.pending.map(Math.round).join(", ")}]`;
      $("#pendingbox").hidden = false; $("#pendinglabel").focus();
    }
  });
}

async function init() {
  S.config = await (await fetch("/api/config", { credentials: "same-origin" })).json();
  $("#layers").innerHTML = S.config.layers.map((l, i) => `<button data-layer="${l}" title="${i + 1}">${LAYER_NAMES[l] || l}</button>`).join("");
  for (const b of document.querySelectorAll("#layers button")) b.addEventListener("click", () => setLayer(b.dataset.layer));
  $("#operator").value = localStorage.getItem("nii.operator") || "";
  $("#operator").addEventListener("change", () => localStorage.setItem("nii.operator", $("#operator").value.trim()));
  $("#logout").hidden = !S.config.auth_required;
  $("#logout").addEventListener("click", async () => { await api("/api/logout", { json: {} }); showLogin(); });
  $("#loginform").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("/api/login", { json: { token: $("#token").value } }); $("#login").hidden = true; $("#token").value = ""; route(); }
    catch (e) { $("#loginerr").textContent = e.message; }
  });
  $("#helpbtn").addEventListener("click", () => { $("#help").hidden = false; });
  $("#helpclose").addEventListener("click", () => { $("#help").hidden = true; });
  for (const id of ["#f-alarm", "#f-reviewed", "#f-class"]) $(id).addEventListener("change", loadQueue);
  $("#f-q").addEventListener("input", () => { clearTimeout(init.qt); init.qt = setTimeout(loadQueue, 200); });
  $("#filters").addEventListener("submit", (e) => e.preventDefault());
  $("#zoomin").addEventListener("click", () => zoomAt(1.25));
  $("#zoomout").addEventListener("click", () => zoomAt(0.8));
  $("#fit").addEventListener("click", fitView);
  $("#one").addEventListener("click", oneToOne);
  $("#showboxes").addEventListener("change", renderOverlay);
  $("#draw").addEventListener("click", () => setDrawing(!S.drawing));
  $("#relabelok").addEventListener("click", finishRelabel);
  $("#relabel").addEventListener("keydown", (e) => { if (e.key === "Enter") finishRelabel(); });
  $("#relabelcancel").addEventListener("click", () => { $("#relabelbox").hidden = true; });
  $("#pendingok").addEventListener("click", addPending);
  $("#pendinglabel").addEventListener("keydown", (e) => { if (e.key === "Enter") addPending(); });
  $("#pendingcancel").addEventListener("click", () => { S.pending = null; $("#pendingbox").hidden = true; renderOverlay(); });
  for (const b of document.querySelectorAll("#verdicts button")) b.addEventListener("click", () => verdict(b.dataset.verdict));
  $("#savenote").addEventListener("click", async () => {
    const note = $("#note").value.trim(); if (!note) return;
    if (await post({ kind: "note", action: "note", note })) { $("#note").value = ""; toast("note saved"); }
  });
  document.addEventListener("keydown", onKey);
  // a station keeps scanning: refresh the queue while it is shown
  setInterval(() => { if (!$("#queueview").hidden && document.visibilityState === "visible") loadQueue().catch(() => {}); }, 15000);
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", () => { if (!$("#viewerview").hidden) fitView(); });
  initViewport();
  if (S.config.auth_required && !S.config.authenticated) showLogin();
  else { if (S.config.auth_required) { /* signed in by cookie */ } }
  // the queue is needed for n/p even when a scan is opened directly
  try { if (!S.config.auth_required || S.config.authenticated) { await loadQueue(); } } catch (e) { /* shown by route */ }
  route();
}

document.addEventListener("DOMContentLoaded", init);
