// The Lakehouse console: plain ES module, no dependencies. Every call goes
// through the HTTP API with the signed-in token; errors are shown as the
// API gives them (`code: message`).

const ROLES = ["read", "write", "admin"];
const TOKEN_KEY = "lakehouse.token";
const $ = (selector, root = document) => root.querySelector(selector);

const state = {
  role: null,
  faults: false,
  lastSeq: null,
  stream: null,
  samples: [],
  lastQuery: null,
};

// ---- API -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, body) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function api(method, path, body) {
  const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!response.ok) {
    const error = data && data.error ? data.error : { code: `http_${response.status}`, message: text };
    throw new ApiError(response.status, error.code, error.message, data);
  }
  return data;
}

function showError(error) {
  const box = $("#error");
  box.textContent = error instanceof ApiError ? error.message : String(error.message || error);
  box.hidden = false;
}

function clearError() {
  $("#error").hidden = true;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const may = (role) => state.role && ROLES.indexOf(state.role) >= ROLES.indexOf(role);

// ---- Pages -----------------------------------------------------------------

function route() {
  const page = (location.hash || "#tree").slice(1);
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.dataset.page !== page;
  }
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (page === "health") refreshHealth();
}

async function signIn(token) {
  if (token !== undefined) {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  }
  try {
    const me = await api("GET", "/v1/whoami");
    state.role = me.role;
    state.faults = me.faults_enabled;
    $("#who").textContent = `${me.name} (${me.role}${me.open ? ", open service" : ""})`;
    clearError();
  } catch (error) {
    state.role = null;
    $("#who").textContent = "not signed in";
    showError(error);
  }
  document.body.dataset.role = state.role || "none";
  applyRole();
  // The stream reads the tree as soon as it is open.
  connectEvents();
}

/// Hides what the token's role may not do.
function applyRole() {
  for (const node of document.querySelectorAll("[data-needs]")) {
    node.hidden = !may(node.dataset.needs);
  }
}

// ---- Tree ------------------------------------------------------------------

async function loadTree() {
  if (!state.role) return;
  try {
    renderTree(await api("GET", "/v1/supervision"));
  } catch (error) {
    showError(error);
  }
}

let treeTimer = null;
function refreshTreeSoon() {
  clearTimeout(treeTimer);
  treeTimer = setTimeout(loadTree, 50);
}

function renderTree(root) {
  const container = $("#tree");
  container.replaceChildren(el("ul", {}, renderNode(root, true)));
  applyRole();
}

function renderNode(node, isRoot = false) {
  const history = node.history || [];
  const head = el("div", { class: "head" },
    el("span", { class: "name" }, node.name),
    el("span", { class: `status ${node.status}`, "data-status": node.status }, node.status),
    el("span", { class: "meta" },
      `restarts ${node.restarts}`,
      node.incarnation ? ` · incarnation ${node.incarnation}` : "",
      node.strategy ? ` · ${node.strategy}` : ""),
  );
  if (!isRoot && node.children.length === 0 && state.faults) {
    head.append(el("button", {
      class: "quiet", type: "button", "data-needs": "admin", "data-fault": node.name,
      "aria-label": `Inject a panic into ${node.name}`,
      onclick: () => injectPanic(node.name),
    }, "Inject panic"));
  }
  const item = el("li", { class: "node", "data-actor": node.name }, head);
  if (node.last_failure) {
    item.append(el("div", { class: "meta" }, `last failure ${node.last_failure.at}: ${node.last_failure.reason}`));
  }
  if (history.length) {
    item.append(el("details", {},
      el("summary", {}, `History (${history.length})`),
      el("ol", {}, history.map((e) =>
        el("li", {}, `${e.at} ${e.kind} #${e.incarnation}${e.reason ? ` — ${e.reason}` : ""}`)))));
  }
  if (node.children.length) item.append(el("ul", {}, node.children.map((c) => renderNode(c))));
  return item;
}

async function injectPanic(actor) {
  try {
    await api("POST", "/v1/admin/faults", { actor, fault: "panic" });
    clearError();
  } catch (error) {
    showError(error);
  }
}

/// Reads `/v1/supervision/events` through fetch (EventSource cannot send a
/// token) and refreshes the tree on every event.
async function connectEvents() {
  if (state.stream) state.stream.abort();
  if (!state.role) return;
  const controller = new AbortController();
  state.stream = controller;
  const since = state.lastSeq === null ? "" : `?since=${state.lastSeq}`;
  try {
    const response = await fetch(`/v1/supervision/events${since}`, { headers: headers(), signal: controller.signal });
    if (!response.ok) throw new ApiError(response.status, "events", await response.text());
    // Whatever happened while no stream was open, the tree is read again.
    document.body.dataset.live = "true";
    loadTree();
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame.split("\n").find((line) => line.startsWith("data: "));
        if (data) onEvent(JSON.parse(data.slice(6)));
      }
    }
  } catch (error) {
    if (controller.signal.aborted) return;
  }
  document.body.dataset.live = "false";
  if (!controller.signal.aborted) setTimeout(connectEvents, 1000);
}

/// What an event says about its actor's status, shown at once (the tree is
/// fetched again right after, for the counts and history).
const STATUS_AFTER = {
  started: "running",
  restarted: "running",
  failed: "restarting",
  gave_up: "failed",
  escalated: "failed",
  stopped: "stopped",
};

/// Every status the page showed, in order (`window.lakehouseStatusLog`).
const statusLog = [];
window.lakehouseStatusLog = statusLog;

function setStatus(actor, status) {
  statusLog.push({ actor, status });
  if (statusLog.length > 500) statusLog.splice(0, statusLog.length - 500);
  const badge = document.querySelector(`.node[data-actor="${CSS.escape(actor)}"] > .head > .status`);
  if (!badge) return;
  badge.className = `status ${status}`;
  badge.dataset.status = status;
  badge.textContent = status;
}

function onEvent(event) {
  if (event.actor === undefined) {
    // `lagged`: events were missed; the tree is read again instead.
    $("#events").prepend(el("li", { "data-kind": "lagged" }, `missed ${event.missed} events`));
    refreshTreeSoon();
    return;
  }
  if (event.seq !== undefined) state.lastSeq = event.seq;
  if (STATUS_AFTER[event.kind]) setStatus(event.actor, STATUS_AFTER[event.kind]);
  const list = $("#events");
  list.prepend(el("li", { "data-kind": event.kind, "data-actor": event.actor },
    `${event.at} ${event.actor} ${event.kind}${event.reason ? ` — ${event.reason}` : ""}`));
  while (list.children.length > 50) list.lastChild.remove();
  refreshTreeSoon();
}

// ---- Health ----------------------------------------------------------------

/// `name{labels} value` lines of a Prometheus exposition.
function parseMetrics(text) {
  const series = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    series.push({ name: match[1], labels, value: Number(match[4]) });
  }
  return series;
}

function summarise(series, lag) {
  const sum = (name, filter = () => true) =>
    series.filter((s) => s.name === name && filter(s.labels)).reduce((a, s) => a + s.value, 0);
  const routes = {};
  for (const s of series) {
    if (s.name !== "lakehouse_http_request_duration_seconds_bucket") continue;
    const key = `${s.labels.method} ${s.labels.route}`;
    (routes[key] ||= {})[s.labels.le] = ((routes[key] || {})[s.labels.le] || 0) + s.value;
  }
  const indexes = {};
  for (const s of series) {
    if (s.name === "lakehouse_vector_index_items") indexes[s.labels.index] = s.value;
  }
  return {
    at: Date.now(),
    requests: sum("lakehouse_http_requests_total"),
    rss: sum("process_resident_memory_bytes"),
    routes,
    indexes,
    lag,
  };
}

/// p99 in ms from the bucket counts added between two samples.
function p99(before, after) {
  if (!before) return null;
  const bounds = Object.keys(after).filter((le) => le !== "+Inf").map(Number).sort((a, b) => a - b);
  const total = (after["+Inf"] || 0) - (before["+Inf"] || 0);
  if (total <= 0) return null;
  for (const le of bounds) {
    const key = String(le);
    const count = (after[key] || 0) - ((before || {})[key] || 0);
    if (count >= 0.99 * total) return le * 1000;
  }
  return Infinity;
}

function chart(title, points, format) {
  const values = points.filter((v) => Number.isFinite(v));
  const max = Math.max(1e-9, ...values);
  const coordinates = points.map((v, i) =>
    `${(i / Math.max(1, points.length - 1)) * 100},${Number.isFinite(v) ? 58 - (v / max) * 54 : 58}`).join(" ");
  const now = values.length ? format(values[values.length - 1]) : "–";
  return el("figure", { class: "chart" },
    el("h4", {}, title),
    el("div", { class: "now" }, now),
    (() => {
      const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("viewBox", "0 0 100 60");
      svg.setAttribute("preserveAspectRatio", "none");
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", `${title}: ${now}`);
      const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
      line.setAttribute("points", coordinates);
      svg.append(line);
      return svg;
    })());
}

async function refreshHealth() {
  if (!state.role) return;
  try {
    const { alarms } = await api("GET", "/v1/alarms");
    $("#alarms").replaceChildren(...(alarms.length ? alarms.map((a) =>
      el("li", { "data-alarm": a.id },
        el("span", { class: `sev ${a.severity}` }, a.severity), " ",
        el("strong", {}, a.id), ` since ${a.since}: ${a.message}`))
      : [el("li", {}, "No alarm is set.")]));
    const response = await fetch("/metrics", { headers: headers() });
    if (!response.ok) throw new ApiError(response.status, "metrics", await response.text());
    const { indexes } = await api("GET", "/v1/vectors/index");
    const lag = {};
    for (const index of indexes.filter((i) => i.status === "running" || i.count !== null).slice(0, 8)) {
      try {
        lag[index.name] = (await api("GET", `/v1/vectors/index/${encodeURIComponent(index.name)}`)).writes_since_snapshot;
      } catch { /* a restarting index has no figure this time */ }
    }
    state.samples.push(summarise(parseMetrics(await response.text()), lag));
    if (state.samples.length > 60) state.samples.shift();
    drawCharts();
  } catch (error) {
    showError(error);
  }
}

function drawCharts() {
  const samples = state.samples;
  const rate = samples.map((s, i) => i === 0 ? NaN :
    (s.requests - samples[i - 1].requests) / ((s.at - samples[i - 1].at) / 1000));
  const charts = [
    chart("Requests/s", rate, (v) => v.toFixed(1)),
    chart("Resident memory", samples.map((s) => s.rss / 2 ** 20), (v) => `${v.toFixed(0)} MB`),
  ];
  const last = samples[samples.length - 1];
  const routes = Object.keys(last.routes).sort();
  for (const key of routes.filter((k) => k.includes("/v1/")).slice(0, 6)) {
    const series = samples.map((s, i) => (i === 0 || !s.routes[key]) ? NaN : p99(samples[i - 1].routes[key], s.routes[key]));
    charts.push(chart(`p99 ${key}`, series, (v) => Number.isFinite(v) ? `≤ ${v} ms` : "> 10 s"));
  }
  for (const name of Object.keys(last.indexes).sort()) {
    charts.push(chart(`Items in ${name}`, samples.map((s) => s.indexes[name] ?? NaN), (v) => v.toFixed(0)));
  }
  for (const name of Object.keys(last.lag).sort()) {
    charts.push(chart(`Writes behind the snapshot: ${name}`, samples.map((s) => s.lag[name] ?? NaN), (v) => v.toFixed(0)));
  }
  $("#charts").replaceChildren(...charts);
  $("#charts").dataset.samples = String(samples.length);
}

// ---- Search ----------------------------------------------------------------

function searchBody(form) {
  const data = new FormData(form);
  const body = { query: data.get("query"), k: Number(data.get("k") || 10), explain: true, mode: data.get("mode") };
  for (const key of ["role", "city", "state", "available_by"]) {
    const value = String(data.get(key) || "").trim();
    if (value) body[key] = value;
  }
  for (const key of ["min_years", "max_rate"]) {
    const value = String(data.get(key) || "").trim();
    if (value) body[key] = Number(value);
  }
  for (const key of ["skills_all", "certifications_any"]) {
    const values = String(data.get(key) || "").split(",").map((v) => v.trim()).filter(Boolean);
    if (values.length) body[key] = values;
  }
  // A radius turns the city into a centre: workers within that many
  // miles of it, in any city.
  // Without a city and its state the service says what is missing.
  const miles = Number(String(data.get("miles") || "").trim());
  if (miles > 0) {
    body.near = { miles };
    for (const key of ["city", "state"]) {
      if (body[key]) body.near[key] = body[key];
      delete body[key];
    }
  }
  // Free for every day of a window (one day when only one end is given).
  const freeFrom = String(data.get("free_from") || "");
  const freeTo = String(data.get("free_to") || "");
  if (freeFrom || freeTo) body.available_between = { from: freeFrom || freeTo, to: freeTo || freeFrom };
  const shift = String(data.get("shift") || "");
  if (shift) body.shift_any = [shift];
  const validOn = String(data.get("certifications_valid_on") || "");
  if (validOn) body.certifications_valid_on = validOn;
  body.use_playbook = data.get("use_playbook") === "on";
  return body;
}

async function search(body) {
  state.lastQuery = body;
  try {
    const results = await api("POST", "/v1/matrix/search", body);
    clearError();
    renderResults(results, body);
  } catch (error) {
    showError(error);
  }
}

function why(explain) {
  if (!explain) return "";
  const parts = [];
  if (explain.semantic_distance !== null) parts.push(`semantic ${explain.semantic_distance.toFixed(3)}`);
  if (explain.keyword_score > 0) parts.push(`keyword ${explain.keyword_score.toFixed(2)} (${explain.matched_terms.join(", ")})`);
  parts.push(`fused ${explain.fused_distance.toFixed(3)} #${explain.fused_rank}`);
  if (explain.distance_miles !== undefined) parts.push(`${explain.distance_miles.toFixed(1)} mi away`);
  if (explain.playbook) {
    parts.push(`× ${explain.boost_factor.toFixed(2)} from ${explain.playbook.recordings.length} recording(s), best score ${explain.playbook.score}`);
  }
  return parts.join(" · ");
}

function renderResults(results, body) {
  const table = $("#results");
  $("#search-summary").textContent =
    `${results.hits.length} workers · ${results.boosted} boosted · ${results.injected} brought in by the playbook`;
  table.tBodies[0].replaceChildren(...results.hits.map((hit) => {
    const w = hit.worker;
    const score = el("input", { type: "number", min: "0", max: "1", step: "0.1", value: "1", "aria-label": `Score for ${w.name}` });
    return el("tr", { "data-worker": hit.worker_id, "data-boosted": String(hit.boosted) },
      el("td", {}, el("strong", {}, w.name), el("br"), hit.worker_id),
      el("td", {}, `${w.role}, ${w.city} ${w.state}`),
      el("td", {}, `$${Number(w.hourly_rate).toFixed(2)}`),
      el("td", {}, hit.distance.toFixed(4), hit.boosted ? el("span", { class: "boost" }, " boosted") : ""),
      el("td", { class: "why" }, why(hit.explain)),
      el("td", {}, el("div", { class: "act" },
        el("span", { "data-needs": "write", class: "act" }, score,
          el("button", { type: "button", "data-record": hit.worker_id, onclick: () => record(hit, body, Number(score.value)) }, "Record placement")),
        el("button", { type: "button", class: "quiet", "data-draft": hit.worker_id, onclick: () => draft(hit) }, "Draft outreach"))));
  }));
  table.hidden = false;
  applyRole();
}

async function record(hit, body, score) {
  try {
    await api("POST", "/v1/matrix/playbooks/record",
      { query: body.query, role: body.role || hit.worker.role, worker_ids: [hit.worker_id], score });
    const again = { ...body, role: body.role || hit.worker.role, use_playbook: true };
    const form = $("#search");
    form.elements.role.value = again.role;
    form.elements.use_playbook.checked = true;
    await search(again);
  } catch (error) {
    showError(error);
  }
}

function draft(hit) {
  const w = hit.worker;
  const form = $("#draft");
  form.elements.kind.value = "sms";
  form.elements.to.value = w.phone;
  form.elements.subject.value = `${w.role} shift`;
  form.elements.body.value = `Hi ${w.name.split(" ")[0]}, we have a ${w.role} shift in ${w.city}. Reply YES to hear more.`;
  $("#outreach").hidden = false;
  $("#verdict").textContent = "";
  form.elements.body.focus();
}

async function checkDraft(form) {
  const data = new FormData(form);
  const kind = data.get("kind");
  const body = kind === "email"
    ? { kind, to: data.get("to"), subject: data.get("subject"), body: data.get("body") }
    : { kind, to: data.get("to"), body: data.get("body") };
  try {
    await api("POST", "/v1/validate", body);
    $("#verdict").textContent = "valid: the validator accepts it";
    clearError();
  } catch (error) {
    if (error.body && error.body.valid === false) {
      $("#verdict").textContent = `not valid: ${error.body.errors.map((e) => `${e.field} ${e.reason}`).join("; ")}`;
    } else {
      showError(error);
    }
  }
}

async function ask(form) {
  const question = new FormData(form).get("question");
  const answer = $("#answer");
  answer.textContent = "…";
  try {
    const reply = await api("POST", "/v1/chat", {
      messages: [{ role: "user", content: question }],
      context: { source: "workers", k: 5 },
    });
    answer.replaceChildren(
      el("p", {}, reply.message.content),
      el("ol", { class: "citations" }, reply.citations.map((c) =>
        el("li", {}, `${c.source} ${c.id} (Lance version ${c.lance_version}, distance ${c.distance.toFixed(3)})`))));
    clearError();
  } catch (error) {
    answer.textContent = "";
    showError(error);
  }
}

// ---- Start -----------------------------------------------------------------

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  $("#token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("#signin").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("#token").value.trim());
  });
  $("#search").addEventListener("submit", (event) => {
    event.preventDefault();
    search(searchBody(event.target));
  });
  $("#draft").addEventListener("submit", (event) => {
    event.preventDefault();
    checkDraft(event.target);
  });
  $("#chat").addEventListener("submit", (event) => {
    event.preventDefault();
    ask(event.target);
  });
  route();
  signIn();
  setInterval(() => { if (location.hash === "#health") refreshHealth(); }, 2000);
});
