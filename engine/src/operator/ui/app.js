// Ordo's operator page: reads /admin/live (server-sent events, one reading per interval) and
// draws each pipeline. Everything shown is set as text, never as markup. Credentials, when
// the engine asks for them, stay in this tab's session storage and go in the Authorization
// header (EventSource cannot send one, so the stream is read with fetch).
"use strict";

/** Readings kept per chart. */
const HISTORY = 120;
/** Where the token is kept, for this tab only. */
const TOKEN_KEY = "ordo-admin-token";
/** Wait before reconnecting after the stream ends or fails, in ms. */
const RETRY_MS = 2000;
/** Line colours, in series order. */
const COLOURS = ["#2563eb", "#16a34a", "#9333ea", "#dc2626", "#d97706", "#0891b2", "#db2777", "#4b5563"];

const pipelines = new Map();
let token = sessionStorage.getItem(TOKEN_KEY);

const $ = (id) => document.getElementById(id);

function setStatus(state, text) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
}

/** The stream's address: `?interval=<ms>` on the page is passed on. */
function liveUrl() {
  const interval = new URLSearchParams(location.search).get("interval");
  return "/admin/live" + (interval && /^\d+$/.test(interval) ? "?interval_ms=" + interval : "");
}

async function connect() {
  const headers = { Accept: "text/event-stream" };
  if (token) headers.Authorization = "Bearer " + token;
  setStatus("connecting", "connecting…");
  let response;
  try {
    response = await fetch(liveUrl(), { headers, cache: "no-store" });
  } catch (e) {
    return retry("engine unreachable");
  }
  if (response.status === 401 || response.status === 403) {
    if (token) {
      // Refused: not kept for the next visit.
      sessionStorage.removeItem(TOKEN_KEY);
      token = null;
    }
    return askForToken(response);
  }
  if (!response.ok || !response.body) {
    return retry("engine answered " + response.status);
  }
  $("token-form").hidden = true;
  $("forget-item").hidden = !token;
  setStatus("live", "live");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (data) render(JSON.parse(data));
      }
    }
  } catch (e) {
    return retry("stream broken");
  }
  retry("stream ended");
}

function retry(why) {
  setStatus("reconnecting", why + "; reconnecting…");
  setTimeout(connect, RETRY_MS);
}

async function askForToken(response) {
  let detail = "";
  try {
    detail = (await response.json()).detail || "";
  } catch (e) {
    detail = "";
  }
  setStatus("denied", response.status === 401 ? "credentials needed" : "not allowed");
  $("token-why").textContent =
    (response.status === 401
      ? "This engine asks for credentials to show its readings."
      : "These credentials lack the admin scope.") + (detail ? " (" + detail + ")" : "");
  $("token-form").hidden = false;
  $("token").focus();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  $("token").value = "";
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  $("token-form").hidden = true;
  connect();
});

$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  token = null;
  location.reload();
});

// Formatting.
function rate(v) {
  if (v >= 100) return Math.round(v).toLocaleString("en");
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}
const count = (v) => Math.round(v).toLocaleString("en");
function when(rfc3339) {
  const d = new Date(rfc3339);
  return isNaN(d) ? rfc3339 : d.toLocaleTimeString("en-GB") + " " + d.toISOString().slice(0, 10);
}
function shortId(id) {
  return id && id.length > 23 ? id.slice(0, 23) + "…" : id || "–";
}

/** A pipeline's section, made from the template on its first reading. */
function section(name) {
  let p = pipelines.get(name);
  if (p) return p;
  const node = $("pipeline-template").content.firstElementChild.cloneNode(true);
  node.dataset.pipeline = name;
  node.querySelector(".name").textContent = name;
  $("pipelines").appendChild(node);
  p = {
    node,
    field: (f) => node.querySelector(`[data-field="${f}"]`),
    history: { ingest: [], applied: [], skipped: [], refused: [], dead: [], retries: [], merge: [], lag: new Map() },
  };
  pipelines.set(name, p);
  return p;
}

function push(points, value) {
  points.push(value);
  if (points.length > HISTORY) points.shift();
}

function render(reading) {
  $("version").textContent = "v" + reading.version;
  $("updated").textContent = "reading of " + when(reading.at);
  $("reloads").textContent = count(reading.reloads_swapped) + " swapped, " + count(reading.reloads_refused) + " refused";
  $("no-pipelines").hidden = reading.pipelines.length > 0;
  const failing = Object.entries(reading.checks || {}).filter(([, ok]) => !ok).map(([check]) => check);
  const ready = $("ready");
  ready.hidden = Object.keys(reading.checks || {}).length === 0;
  ready.dataset.state = failing.length ? "denied" : "live";
  ready.textContent = failing.length ? "not ready: " + failing.join(", ") : "ready";
  ready.title = "readiness checks, every 10 s (GET /readyz for the reasons)";
  for (const r of reading.pipelines) renderPipeline(section(r.name), r, reading.interval_seconds);
}

function renderPipeline(p, r, seconds) {
  const h = p.history;
  const deadRate = seconds > 0 ? r.dead_letters_new / seconds : 0;
  push(h.ingest, r.ingest_per_second);
  push(h.applied, r.applied_per_second);
  push(h.skipped, r.skipped_per_second);
  push(h.refused, r.refused_per_second);
  push(h.dead, deadRate);
  push(h.retries, r.retries_per_second);
  push(h.merge, r.merge_micros ?? 0);
  for (const partition of new Set([...h.lag.keys(), ...Object.keys(r.lag)])) {
    if (!h.lag.has(partition)) h.lag.set(partition, new Array(h.ingest.length - 1).fill(0));
    push(h.lag.get(partition), r.lag[partition] ?? 0);
  }
  p.field("ingest").textContent = rate(r.ingest_per_second);
  p.field("refused").textContent = rate(r.refused_per_second) + " /s refused";
  p.field("applied").textContent = rate(r.applied_per_second);
  p.field("applied-total").textContent = count(r.applied_total) + " since start";
  p.field("skipped").textContent = rate(r.skipped_per_second);
  p.field("skipped-total").textContent = count(r.skipped_total) + " since start";
  p.field("dead").textContent = count(r.dead_letters_total);
  p.field("dead").closest(".tile").classList.toggle("alert", r.dead_letters_total > 0);
  p.field("dead-new").textContent = "+" + count(r.dead_letters_new) + " this interval";
  p.field("lag").textContent = count(r.lag_total);
  const partitions = Object.keys(r.lag).length;
  p.field("partitions").textContent = partitions + (partitions === 1 ? " partition" : " partitions") + " held";
  const atOnce = p.field("keys-at-once");
  atOnce.hidden = r.keys_at_once == null;
  atOnce.textContent = count(r.keys_at_once ?? 0) + " keys applied at once";
  atOnce.title = "The limit the throughput and DynamoDB's throttling set now, at most the pipeline's concurrency";
  p.field("merge").textContent = r.merge_micros == null ? "–" : rate(r.merge_micros) + " µs";
  const waiting = p.field("waiting");
  waiting.hidden = !(r.keys_waiting > 0);
  waiting.textContent = count(r.keys_waiting) + " key(s) waiting";
  waiting.title = r.waiting_reason || "";

  chart(p, "rates", [
    ["ingest", h.ingest],
    ["applied", h.applied],
    ["stale skipped", h.skipped],
    ["refused at ingest", h.refused],
  ]);
  chart(p, "lag", [...h.lag.entries()].sort((a, b) => a[0] - b[0]).map(([k, v]) => ["partition " + k, v]));
  chart(p, "trouble", [
    ["dead letters", h.dead],
    ["retries", h.retries],
  ]);
  chart(p, "merge", [["mean µs", h.merge]]);

  renderPlugin(p, r.plugin);
  renderLetters(p, r.dead_letters);
}

function renderPlugin(p, plugin) {
  p.field("plugin-id").textContent = plugin ? shortId(plugin.id) : "–";
  p.field("plugin-id").title = plugin ? plugin.id : "";
  p.field("plugin-file").textContent = plugin ? plugin.file : "–";
  p.field("plugin-since").textContent = plugin ? when(plugin.loaded_at) : "–";
  const reload = plugin && plugin.last_reload;
  const cell = p.field("plugin-reload");
  cell.textContent = "";
  if (reload) {
    const outcome = document.createElement("span");
    outcome.className = "outcome-" + reload.outcome;
    outcome.textContent = reload.outcome;
    cell.append(outcome, " at " + when(reload.at));
  } else {
    cell.textContent = "none since start-up";
  }
  const detail = p.field("plugin-detail");
  detail.hidden = !(reload && reload.detail);
  detail.textContent = reload && reload.detail ? reload.detail : "";
}

function renderLetters(p, letters) {
  const body = p.field("letters");
  const rows = letters.map((l) => {
    const row = document.createElement("tr");
    for (const [text, cls] of [
      [when(l.at), ""],
      [String(l.partition), "num"],
      [String(l.offset), "num"],
      [l.key, ""],
      [l.reason, "reason"],
    ]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (cls) cell.className = cls;
      row.appendChild(cell);
    }
    return row;
  });
  body.replaceChildren(...rows);
  p.field("no-letters").hidden = letters.length > 0;
}

/** A round number at or above `v` whose quarters are round too, for the top of an axis. */
function ceiling(v) {
  if (v <= 0) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 4, 8, 10]) if (m * step >= v) return m * step;
  return 10 * step;
}

/** Draws `series` ([label, points]) on the pipeline's canvas `name`, newest point at the right. */
function chart(p, name, series) {
  const canvas = p.node.querySelector(`canvas[data-chart="${name}"]`);
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const pad = { left: 46, right: 6, top: 6, bottom: 6 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  let max = 0;
  for (const [, points] of series) for (const v of points) max = Math.max(max, v);
  const top = ceiling(max);
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + plotH - (plotH * i) / 4;
    ctx.strokeStyle = "#e2e5eb";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(pad.left, Math.round(y) + 0.5);
    ctx.lineTo(width - pad.right, Math.round(y) + 0.5);
    ctx.stroke();
    ctx.fillStyle = "#687082";
    const label = (top * i) / 4;
    ctx.fillText(label >= 1000 ? Math.round(label).toLocaleString("en") : String(+label.toFixed(2)), pad.left - 6, y);
  }
  series.forEach(([, points], i) => {
    if (points.length === 0) return;
    ctx.strokeStyle = COLOURS[i % COLOURS.length];
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    points.forEach((v, j) => {
      const x = pad.left + plotW - ((points.length - 1 - j) * plotW) / (HISTORY - 1);
      const y = pad.top + plotH - (Math.min(v, top) / top) * plotH;
      if (j === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  });
  // What a test (or a curious operator) can read without looking at pixels.
  canvas.dataset.max = String(max);
  canvas.dataset.points = String(series.length ? series[0][1].length : 0);
  canvas.dataset.last = JSON.stringify(Object.fromEntries(series.map(([label, points]) => [label, points[points.length - 1] ?? 0])));
  const legend = p.node.querySelector(`[data-legend="${name}"]`);
  legend.replaceChildren(
    ...series.map(([label], i) => {
      const item = document.createElement("span");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = COLOURS[i % COLOURS.length];
      item.append(swatch, label);
      return item;
    }),
  );
}

connect();
