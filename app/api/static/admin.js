/* Lethe admin dashboard: vanilla JS, no dependencies. The admin key lives in sessionStorage
 * only and goes out as a bearer token on each JSON API call. Charts are inline SVG drawn here.
 * Every number shown carries its raw API value in a data-value attribute (for tests and copy). */
"use strict";

const KEY_NAME = "lethe.adminKey";
const PAGE_SIZE = 50;
const SVG_NS = "http://www.w3.org/2000/svg";
const state = { modelId: null, offset: 0, timer: null };

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, String(v));
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A number for display: integers as is, others with 4 significant digits; "Infinity" → ∞. */
function fmt(x) {
  if (x === null || x === undefined) return "–";
  if (typeof x === "string" && x !== "Infinity" && Number.isNaN(Number(x))) return x;
  const n = Number(x);
  if (!Number.isFinite(n)) return "∞";
  const abs = Math.abs(n);
  if (abs !== 0 && (abs >= 1e6 || abs < 1e-3)) {
    const [mantissa, exponent] = n.toExponential(3).split("e");
    return `${Number(mantissa)}e${exponent}`;
  }
  return Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(4)));
}

function pct(x) { return x === null || x === undefined ? "–" : (100 * Number(x)).toFixed(2) + "%"; }

function age(seconds) {
  if (seconds === null || seconds === undefined) return "none";
  const s = Math.round(seconds);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function td(value, text, attrs = {}) {
  return el("td", { "data-value": value, ...attrs }, text ?? fmt(value));
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

class ApiError extends Error {
  constructor(status, problem) {
    super(`${status} ${problem.title || ""}: ${problem.detail || ""}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(path) {
  const key = sessionStorage.getItem(KEY_NAME);
  const response = await fetch(path, { headers: { Authorization: `Bearer ${key}` } });
  if (!response.ok) {
    let problem = {};
    try { problem = await response.json(); } catch (_) { /* not JSON */ }
    if (response.status === 401) logout("The key was refused (401): log in again.");
    throw new ApiError(response.status, problem);
  }
  return response.json();
}

async function downloadWithKey(path, filename) {
  const key = sessionStorage.getItem(KEY_NAME);
  const response = await fetch(path, { headers: { Authorization: `Bearer ${key}` } });
  if (!response.ok) { showError(`download failed: ${response.status}`); return; }
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: filename, hidden: "" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

function show(view) {
  for (const id of ["login-view", "models-view", "model-view"]) $("#" + id).hidden = id !== view;
  $("#logout").hidden = view === "login-view";
}

function logout(message) {
  sessionStorage.removeItem(KEY_NAME);
  clearInterval(state.timer);
  show("login-view");
  showError(message || "");
}

async function route() {
  clearInterval(state.timer);
  showError("");
  if (!sessionStorage.getItem(KEY_NAME)) { show("login-view"); return; }
  const match = location.hash.match(/^#\/models\/([^/?]+)/);
  try {
    if (match) await openModel(decodeURIComponent(match[1])); else await listModels();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) showError(String(err.message || err));
  }
}

// --- model list ---------------------------------------------------------------------------------

async function listModels() {
  const models = await api("/v1/models");
  show("models-view");
  const body = $("#models tbody");
  body.replaceChildren();
  $("#no-models").hidden = models.length > 0;
  $("#models").hidden = models.length === 0;
  for (const m of models) {
    body.append(el("tr", { "data-model-id": m.id },
      el("td", {}, el("a", { class: "model-link", href: `#/models/${encodeURIComponent(m.id)}` }, m.name)),
      el("td", {}, el("code", {}, m.id)), el("td", {}, m.architecture),
      el("td", {}, el("span", { class: `badge ${m.status}` }, m.status)),
      td(m.current_version), el("td", {}, m.created_at)));
  }
}

// --- one model ----------------------------------------------------------------------------------

async function openModel(modelId) {
  if (state.modelId !== modelId) state.offset = 0;
  state.modelId = modelId;
  const model = await api(`/v1/models/${encodeURIComponent(modelId)}`);
  show("model-view");
  $("#model-name").textContent = model.name;
  const badge = $("#model-status");
  badge.textContent = model.status;
  badge.className = `badge ${model.status}`;
  $("#model-id").textContent = model.id;
  $("#model-dataset").textContent = model.dataset_id;
  $("#model-arch").textContent = model.architecture;
  const error = $("#model-error");
  error.hidden = !model.error;
  error.textContent = model.error ? `${model.status}: ${model.error}` : "";
  // Each section loads on its own: one failing (shown in #error) leaves the others usable.
  const sections = [
    Promise.all([api(`/v1/models/${encodeURIComponent(modelId)}/budget`),
                 api(`/v1/datasets/${encodeURIComponent(model.dataset_id)}`)])
      .then(([budget, dataset]) => renderBudget(budget, dataset.n)),
    refreshSummary(),
    loadVersions(),
  ];
  const failed = (await Promise.allSettled(sections)).filter((r) => r.status === "rejected");
  if (failed.length) showError(failed.map((r) => String(r.reason.message || r.reason)).join("; "));
  state.timer = setInterval(() => refreshSummary().catch(() => {}), 4000);
}

function card(label, field, value, cap) {
  return el("div", { class: "card", "data-field": field },
    label, el("b", { "data-value": value }, fmt(value)),
    cap === undefined ? "" : el("span", { class: "muted", "data-cap": cap }, `cap ${fmt(cap)}`));
}

function renderBudget(b, n) {
  $("#budget-lineage").textContent = b.lineage;
  const c = b.consumed, r = b.remaining, caps = b.caps;
  $("#budget-summary").replaceChildren(
    card("cumulative ε", "cumulative_epsilon", b.cumulative_epsilon, caps.max_epsilon),
    card("cumulative δ", "cumulative_delta", b.cumulative_delta, caps.max_delta),
    card("releases in lineage", "releases", c.releases, caps.max_releases),
    card("forgotten fraction", "forgotten_fraction", c.forgotten_fraction, caps.max_forgotten_fraction),
    card("remaining ε", "remaining_epsilon", r.epsilon),
    card("releases that fit (projection)", "releases_that_fit", b.projection.releases_that_fit),
    card("accountant", "accountant", b.accountant ?? "–"),
  );
  const rows = b.rows;
  $("#ledger-count").textContent = rows.length;
  $("#ledger-details").open = rows.length <= 50;  // a long ledger starts folded
  $("#no-ledger").hidden = rows.length > 0;
  const body = $("#ledger tbody");
  body.replaceChildren(...rows.map((row) => el("tr", { "data-version": row.version },
    td(row.version), el("td", {}, row.kind), td(row.lineage), td(row.m),
    td(row.sensitivity, undefined, { "data-field": "sensitivity" }),
    td(row.noise_std, undefined, { "data-field": "noise_std" }),
    td(row.epsilon, undefined, { "data-field": "epsilon" }),
    td(row.cumulative_epsilon, undefined, { "data-field": "cumulative_epsilon" }),
    el("td", {}, row.accountant))));

  // Forgotten fraction of D in the lineage after each release (reset by a retrain).
  let lineage = null, forgotten = 0;
  const fractions = rows.map((row) => {
    if (row.lineage !== lineage) { lineage = row.lineage; forgotten = 0; }
    if (row.kind === "unlearned") forgotten += row.m;
    return forgotten / Math.max(1, n);
  });
  const markers = rows.filter((row) => row.kind === "retrained").map((row) => row.version);
  const points = (key) => rows.map((row, i) => ({ i, version: row.version, y: Number(row[key]), kind: row.kind }));
  // Log scale when the cap dwarfs the consumption (the fixed-σ regime), so both stay readable.
  const top = Math.max(0, ...rows.map((row) => Number(row.cumulative_epsilon)).filter(Number.isFinite));
  const epsLog = top > 0 && Number(caps.max_epsilon) / top > 50;
  $("#chart-epsilon").dataset.scale = epsLog ? "log" : "linear";
  drawChart($("#chart-epsilon"), {
    rows, markers, cap: Number(caps.max_epsilon), logY: epsLog, capLabel: `cap ε = ${fmt(caps.max_epsilon)}`,
    series: [{ name: "cumulative ε", cls: "eps", points: points("cumulative_epsilon") }],
  });
  drawChart($("#chart-noise"), {
    rows, markers, logY: true,
    series: [
      { name: "σ", cls: "sigma", points: points("noise_std").filter((p) => p.kind === "unlearned") },
      { name: "Δ", cls: "delta", points: points("sensitivity").filter((p) => p.kind === "unlearned") },
    ],
  });
  drawChart($("#chart-forgotten"), {
    rows, markers, cap: Number(caps.max_forgotten_fraction),
    capLabel: `cap = ${fmt(caps.max_forgotten_fraction)}`,
    series: [{ name: "forgotten fraction", cls: "forgotten",
               points: rows.map((row, i) => ({ i, version: row.version, y: fractions[i] })) }],
  });
}

/** Draw series of {i, version, y} over release index i, with an optional cap line and retrain
 * markers, into an SVG of viewBox 640×260. Non-finite y (ε = ∞) are clamped to the top. */
function drawChart(svg, { rows, series, cap, capLabel, markers = [], logY = false }) {
  svg.replaceChildren();
  const W = 640, H = 260, L = 70, R = 20, T = 16, B = 36;
  if (rows.length === 0) {
    svg.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, "no releases yet"));
    return;
  }
  const finite = series.flatMap((s) => s.points.map((p) => p.y)).filter((y) => Number.isFinite(y) && (!logY || y > 0));
  if (cap !== undefined && Number.isFinite(cap)) finite.push(cap);
  let lo = logY ? Math.min(...finite) : 0, hi = finite.length ? Math.max(...finite) : 1;
  if (logY) {
    lo = Math.pow(10, Math.floor(Math.log10(lo || 1e-3)));
    hi = Math.pow(10, Math.ceil(Math.log10(hi || 1)));
    if (hi <= lo) hi = lo * 10;
  } else {
    hi = hi > 0 ? hi * 1.08 : 1;
  }
  const tr = (y) => (logY ? Math.log10(y) : y);
  const sy = (y) => {
    if (!Number.isFinite(y)) return T;
    const v = Math.min(Math.max(tr(logY && y <= 0 ? lo : y), tr(lo)), tr(hi));
    return T + (H - T - B) * (1 - (v - tr(lo)) / (tr(hi) - tr(lo)));
  };
  const last = Math.max(1, rows.length - 1);
  const sx = (i) => L + (W - L - R) * (rows.length === 1 ? 0.5 : i / last);
  // axes and y ticks
  svg.append(svgEl("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  svg.append(svgEl("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  const decades = Math.round(Math.log10(hi / lo));
  const every = Math.max(1, Math.ceil(decades / 6));
  const ticks = logY
    ? Array.from({ length: Math.floor(decades / every) + 1 }, (_, k) => lo * Math.pow(10, k * every))
    : [0, 0.25, 0.5, 0.75, 1].map((f) => f * hi);
  for (const t of ticks) {
    svg.append(svgEl("line", { class: "grid", x1: L, x2: W - R, y1: sy(t), y2: sy(t) }));
    svg.append(svgEl("text", { x: L - 4, y: sy(t) + 4, "text-anchor": "end" }, fmt(t)));
  }
  // x ticks: release versions (at most ~10 labels)
  const step = Math.max(1, Math.ceil(rows.length / 10));
  rows.forEach((row, i) => {
    if (i % step === 0 || i === rows.length - 1) {
      svg.append(svgEl("text", { x: sx(i), y: H - B + 14, "text-anchor": "middle" }, `v${row.version}`));
    }
  });
  svg.append(svgEl("text", { x: W - R, y: H - 4, "text-anchor": "end" }, "release (version)"));
  if (cap !== undefined && Number.isFinite(cap)) {
    svg.append(svgEl("line", { class: "cap", x1: L, x2: W - R, y1: sy(cap), y2: sy(cap), "data-value": cap }));
    svg.append(svgEl("text", { x: W - R, y: sy(cap) - 4, "text-anchor": "end", fill: "#c00" }, capLabel));
  }
  for (const version of markers) {
    const i = rows.findIndex((row) => row.version === version);
    svg.append(svgEl("line", { class: "retrain", x1: sx(i), x2: sx(i), y1: T, y2: H - B, "data-version": version }));
    const right = sx(i) > W - R - 60;
    svg.append(svgEl("text", { x: sx(i) + (right ? -3 : 3), y: right ? T + 24 : H - B - 6, fill: "#7a3cc9",
                               "text-anchor": right ? "end" : "start" }, "retrain"));
  }
  series.forEach((s, k) => {
    const pts = s.points;  // on a log scale, 0 sits on the bottom axis
    if (pts.length > 1) {
      svg.append(svgEl("polyline", { class: `line-${s.cls}`, points: pts.map((p) => `${sx(p.i)},${sy(p.y)}`).join(" ") }));
    }
    for (const p of pts) {
      const dot = svgEl("circle", { class: `pt-${s.cls}`, cx: sx(p.i), cy: sy(p.y), r: rows.length > 200 ? 1.5 : 3.5,
                                    "data-version": p.version, "data-value": Number.isFinite(p.y) ? p.y : "Infinity" });
      dot.append(svgEl("title", {}, `v${p.version}: ${s.name} = ${fmt(p.y)}`));
      svg.append(dot);
    }
    svg.append(svgEl("text", { x: 4 + 120 * k, y: H - 4, class: `legend pt-${s.cls}` }, `● ${s.name}`));
  });
}

async function refreshSummary() {
  const s = await api(`/v1/admin/models/${encodeURIComponent(state.modelId)}/summary`);
  const statuses = Object.keys(s.counts);
  $("#queue-counts thead tr").replaceChildren(...statuses.map((k) => el("th", {}, k)), el("th", {}, "total"));
  $("#queue-counts tbody tr").replaceChildren(
    ...statuses.map((k) => td(s.counts[k], undefined, { "data-status": k })),
    td(s.total, undefined, { "data-status": "total" }));
  const oldest = $("#oldest-pending");
  oldest.textContent = age(s.oldest_pending_age_s);
  oldest.dataset.value = s.oldest_pending_age_s ?? "";
  $("#no-failures").hidden = s.recent_failures.length > 0;
  $("#recent-failures").replaceChildren(...s.recent_failures.map((f) =>
    el("li", { "data-request-id": f.id }, el("code", {}, f.id), ` (${f.sample_count} samples, ${f.updated_at}): `,
       el("span", { class: "failure" }, f.error || "no reason recorded"))));
  $("#no-jobs").hidden = s.active_jobs.length > 0;
  $("#jobs").hidden = s.active_jobs.length === 0;
  $("#jobs tbody").replaceChildren(...s.active_jobs.map((j) => el("tr", { "data-job-id": j.id },
    el("td", {}, el("code", {}, j.id)), el("td", {}, j.kind), el("td", {}, j.status),
    el("td", { "data-value": j.progress }, el("progress", { max: 1, value: j.progress }), ` ${pct(j.progress)}`),
    el("td", {}, j.started_at ?? "–"))));
}

async function loadVersions() {
  const id = encodeURIComponent(state.modelId);
  const page = await api(`/v1/admin/models/${id}/versions?limit=${PAGE_SIZE}&offset=${state.offset}`);
  $("#no-versions").hidden = page.total > 0;
  $("#versions").hidden = page.total === 0;
  $("#versions-pager").hidden = page.total <= PAGE_SIZE;
  const end = Math.min(page.total, page.offset + page.items.length);
  const range = $("#versions-range");
  range.textContent = `${page.total ? page.offset + 1 : 0}–${end} of ${page.total}`;
  range.dataset.total = page.total;
  $("#versions-prev").disabled = page.offset === 0;
  $("#versions-next").disabled = end >= page.total;
  $("#versions tbody").replaceChildren(...page.items.map((v) => {
    const acc = (v.metrics && v.metrics.accuracy) || {};
    const weights = el("a", { href: "#", class: "download-weights" }, `${fmt(v.size)} B`);
    weights.addEventListener("click", (e) => { e.preventDefault();
      downloadWithKey(`/v1/models/${id}/versions/${v.number}/download`, `${state.modelId}-v${v.number}.safetensors`); });
    const cert = el("a", { href: "#", class: "download-cert" }, "certificate");
    cert.addEventListener("click", (e) => { e.preventDefault();
      downloadWithKey(`/v1/models/${id}/versions/${v.number}/certificate`, `${state.modelId}-v${v.number}-certificate.json`); });
    return el("tr", { "data-version": v.number },
      td(v.number), el("td", {}, v.kind), el("td", {}, v.created_at),
      td(acc.forget, pct(acc.forget), { "data-field": "forget" }),
      td(acc.retain, pct(acc.retain), { "data-field": "retain" }),
      td(acc.test, pct(acc.test), { "data-field": "test" }),
      el("td", {}, weights), el("td", {}, cert),
      el("td", {}, el("span", { class: `verify ${v.verification.status}`, "data-status": v.verification.status,
                                title: v.verification.detail }, v.verification.status === "OK" ? "✔ signature OK" : "✘ " + v.verification.detail)));
  }));
}

// --- wiring -------------------------------------------------------------------------------------

$("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_NAME, $("#admin-key").value.trim());
  $("#admin-key").value = "";
  await route();
});
$("#logout").addEventListener("click", () => logout(""));
$("#versions-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); loadVersions().catch((e) => showError(e.message)); });
$("#versions-next").addEventListener("click", () => { state.offset += PAGE_SIZE; loadVersions().catch((e) => showError(e.message)); });
window.addEventListener("hashchange", route);
route();
