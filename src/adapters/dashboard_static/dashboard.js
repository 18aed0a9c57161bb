// record-deleter dashboard: polls /api/overview and renders it. Every value from the server is
// untrusted text (record ids, reasons): it reaches the page through textContent only.
"use strict";

const DASH = "\u2014"; // what a value the ledger does not hold (yet) shows as
const SVG = "http://www.w3.org/2000/svg";
let refreshMs = 1500;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function shown(value) {
  if (value === null || value === undefined || value === "") return DASH;
  return typeof value === "object" ? JSON.stringify(value) : value;  // a batch's rows per table
}

function number(value) { return value === null || value === undefined ? DASH : Number(value).toLocaleString("en"); }

function duration(seconds) {
  if (seconds === null || seconds === undefined) return DASH;
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function time(iso) { return iso ? new Date(iso).toLocaleTimeString() : DASH; }

function coordinates(list) {
  if (!list || list.length === 0) return DASH;
  return list.map((c) => c.topic + "/" + c.partition + "/" + c.offset).join(", ");
}

function row(cells, data) {
  const tr = document.createElement("tr");
  if (data) for (const [key, value] of Object.entries(data)) tr.dataset[key] = value;
  for (const [text, cls] of cells) tr.appendChild(el("td", text, cls));
  return tr;
}

function fill(tableId, rows) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren(...rows);
}

function renderInFlight(doc) {
  fill("in-flight", doc.in_flight.map((r) => row([
    [r.shown_id, "id"], [r.attempt, "num"], [r.status, r.status],
    [number(r.rows_deleted), "num rows-deleted"], [number(r.rows_left), "num rows-left"],
    [number(r.batches), "num"], [duration(r.age_seconds), "num"], [shown(r.worker)],
  ], { record: r.record_id, status: r.status })));
  const note = doc.in_flight_count > doc.in_flight_shown
    ? "(oldest " + doc.in_flight_shown + " of " + doc.in_flight_count + ")" : "";
  document.getElementById("in-flight-note").textContent = note;
  document.getElementById("in-flight-count").textContent = number(doc.in_flight_count);
  document.getElementById("oldest").textContent = duration(doc.oldest_in_flight_seconds);
}

function renderAnswers(doc) {
  fill("answers", doc.answers.map((a) => row([
    [a.shown_id, "id"], [a.attempt, "num"], [a.outcome, a.outcome], [time(a.finished_at)],
    [number(a.rows_deleted), "num"], [number(a.batches), "num"], [coordinates(a.requests)],
    [coordinates(a.answers)], [shown(a.reason), "reason"],
  ], { record: a.record_id, outcome: a.outcome })));
}

function renderWorkers(doc) {
  document.getElementById("workers-section").hidden = doc.workers.length === 0;
  fill("workers", doc.workers.map((w) => row([
    [w.url], [w.ready === null ? DASH : (w.ready ? "ready" : "not ready"), w.ready ? "done" : "failed"],
    [number(w.store_errors), "num"], [shown(w.checks)],
  ])));
}

function renderNotJoined(doc) {
  const box = doc.not_joined;
  document.getElementById("not-joined-section").hidden = !box;
  if (!box) return;
  const error = document.getElementById("not-joined-error");
  error.hidden = !box.error;
  error.textContent = box.error || "";
  document.getElementById("not-joined-note").textContent = box.error ? "" : "(" + box.count + ")";
  fill("not-joined", box.requests.map((r) => row([
    [r.topic], [r.partition, "num"], [r.offset, "num"], [duration(r.age_seconds), "num"],
  ], { key: r.key })));
}

function renderChart(t) {
  const svg = document.getElementById("chart");
  const width = 600, height = 80, n = t.rows.length;
  const max = Math.max(1, ...t.rows);
  const maxRecords = Math.max(1, ...t.records);
  const step = width / Math.max(1, n - 1);
  const children = [];
  t.records.forEach((count, i) => {
    if (!count) return;
    const bar = document.createElementNS(SVG, "rect");
    const h = (count / maxRecords) * (height / 3);
    bar.setAttribute("x", String(i * step - step / 3));
    bar.setAttribute("y", String(height - h));
    bar.setAttribute("width", String((step * 2) / 3));
    bar.setAttribute("height", String(h));
    bar.setAttribute("class", "records");
    children.push(bar);
  });
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", t.rows.map((v, i) => (i * step) + "," + (height - 2 - (v / max) * (height - 6))).join(" "));
  line.setAttribute("class", "rows");
  children.push(line);
  svg.replaceChildren(...children);
  document.getElementById("peak").textContent = Math.round(max / t.bucket_seconds).toLocaleString("en");
  const rate = (value, digits) => Number(value).toLocaleString("en", { maximumFractionDigits: digits });
  document.getElementById("rows-rate").textContent = rate(t.recent_rows_per_second, 0);
  document.getElementById("records-rate").textContent = rate(t.recent_records_per_second, 2);
  document.getElementById("rows-rate-window").textContent = rate(t.rows_per_second, 0);
  document.getElementById("records-rate-window").textContent = rate(t.records_per_second, 3);
}

function render(doc) {
  const error = document.getElementById("error");
  error.hidden = !doc.error;
  error.textContent = doc.error || "";
  if (doc.in_flight) {
    renderInFlight(doc);
    renderAnswers(doc);
    renderChart(doc.throughput);
  }
  renderNotJoined(doc);
  renderWorkers(doc);
  if (doc.refresh_seconds) refreshMs = doc.refresh_seconds * 1000;
  document.getElementById("status").textContent = "updated " + time(doc.now);
}

async function refresh() {
  try {
    const response = await fetch("/api/overview", { cache: "no-store" });
    render(await response.json());
  } catch (exc) {
    document.getElementById("status").textContent = "dashboard unreachable: " + exc;
  }
  setTimeout(refresh, refreshMs);
}

function historyTable(title, rows, columns) {
  const box = document.createDocumentFragment();
  box.appendChild(el("h3", title + " (" + rows.length + ")"));
  const table = el("table");
  const head = document.createElement("tr");
  for (const c of columns) head.appendChild(el("th", c));
  table.appendChild(el("thead")).appendChild(head);
  const body = table.appendChild(el("tbody"));
  for (const r of rows) body.appendChild(row(columns.map((c) => [shown(r[c])])));
  box.appendChild(table);
  return box;
}

async function search(event) {
  event.preventDefault();
  const box = document.getElementById("history");
  const query = document.getElementById("search-input").value.trim();
  if (!query) return;
  box.replaceChildren(el("p", "searching…", "muted"));
  try {
    const response = await fetch("/api/history?record=" + encodeURIComponent(query), { cache: "no-store" });
    const h = await response.json();
    if (h.error) { box.replaceChildren(el("p", h.error, "error")); return; }
    if (!h.chain) { box.replaceChildren(el("p", "never requested: the ledger holds nothing about " + query, "muted")); return; }
    box.replaceChildren(
      el("p", "audit " + h.chain.summary, h.chain.intact ? "muted" : "error"),
      historyTable("Requests", h.requests, ["shown_id", "attempt", "topic", "partition", "offset", "received_at"]),
      historyTable("Attempts", h.attempts, ["shown_id", "attempt", "state", "started_at", "finished_at", "rows_deleted", "batches", "reason"]),
      historyTable("Answers", h.answers, ["shown_id", "attempt", "outcome", "topic", "partition", "offset", "worker", "published_at"]),
      historyTable("Batches", h.batches, ["shown_id", "attempt", "rows_deleted", "deleted_at", "worker", "tables", "chain_hash"]),
    );
  } catch (exc) {
    box.replaceChildren(el("p", "search failed: " + exc, "error"));
  }
}

document.getElementById("search").addEventListener("submit", search);
refresh();
