// The admin view: index versions and alias, reindex with live progress, ranking model, dead letters, rules.
// Every call sends the admin key as X-Admin-Key. An endpoint that is not there answers 404/405/501 and its panel
// says "not available"; nothing is made up.
//
// What this page reads (leniently: a missing field shows as "—"):
//   GET  admin/indices               {"alias", "versions": [{"version", "name", "live", "count", "model_id",
//                                     "dimension", "created_at"}], "jobs": [job, ...]}     (routes/admin_indices.py)
//   POST admin/reindex               202 job; 409 {"detail": [...], "job_id"} while one runs
//   GET  admin/reindex/{job_id}      job: {"job_id", "kind", "phase", "from_version", "to_version", "model_id",
//                                     "done", "total", "embedded", "rate_per_s", "eta_s", "message", "errors": [str]}
//   POST admin/reindex/{job_id}/cancel
//   Assumed, not built yet (issue 7 and the ledger):
//   GET  admin/rules                 {"rules": [{"id", "action", "query", "match", "filter", "valid_from",
//                                     "valid_to", ...}]}   (or the bare list)
//   GET  admin/model                 {"model_id", "feature_version", "loaded_at", "fallback", ...,
//                                     "metrics": {"ndcg@10": x, ...}}   (nested metrics are flattened: "cv.ndcg@10")
//   GET  admin/dlq                   {"count", "events": [{"event_id", "item_id", "op", "attempts", "error"}]}
//                                     (or the bare list, as `trawl dlq list --json` prints it)

import { ApiError, attachLatencyLog, request } from "./api.js";
import { fill, formatCount, formatScore, h } from "./dom.js";

const KEY_STORE = "trawl.admin_key";
const JOB_STORE = "trawl.reindex_job";
const POLL_MS = 500;
const MAX_POLL_FAILURES = 10;
const TERMINAL_PHASES = new Set(["done", "completed", "complete", "succeeded", "success", "failed", "error", "cancelled", "canceled"]);
const FAILED_PHASES = new Set(["failed", "error", "cancelled", "canceled"]);

const $ = (id) => document.getElementById(id);
const els = {
  keyForm: $("key-form"),
  key: $("admin-key"),
  keyState: $("key-state"),
  forget: $("forget-key"),
  refresh: $("refresh"),
  reindexStart: $("reindex-start"),
  reindexCancel: $("reindex-cancel"),
  latency: $("latency"),
};
const cards = Object.fromEntries(
  ["indices", "reindex", "model", "dlq", "rules"].map((name) => {
    const root = $(`card-${name}`);
    return [name, { root, status: root.querySelector(".card-status"), body: root.querySelector(".card-body") }];
  }),
);

const state = { ledgerCounts: null, dlqMissing: false, polling: null };

// ---- the key and the requests -----------------------------------------------------------------------------

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

function getKey() {
  return storage()?.getItem(KEY_STORE) ?? "";
}

function setKey(key) {
  if (key) storage()?.setItem(KEY_STORE, key);
  else storage()?.removeItem(KEY_STORE);
  els.keyState.textContent = key ? "A key is set." : "No key set.";
}

function admin(label, method, path, options = {}) {
  const key = getKey();
  return request(label, method, path, { ...options, headers: key ? { "X-Admin-Key": key } : {} });
}

// ---- cards ------------------------------------------------------------------------------------------------

function show(card, status, message, ...content) {
  card.root.dataset.state = status;
  card.status.textContent = message ?? "";
  card.status.hidden = !message;
  if (content.length) fill(card.body, ...content);
}

/** Why a call failed, in the card's words: [state, message]. */
function failure(err, what) {
  if (!(err instanceof ApiError)) return ["error", `${what}: ${err}`];
  if (err.missing) return ["unavailable", `Not available: ${what} answered ${err.status}.`];
  if (err.status === 401 || err.status === 403) {
    return ["unauthorized", `${what}: the admin key was ${getKey() ? "refused" : "missing"} (${err.status}).`];
  }
  if (err.status === 0) return ["error", `${what}: no answer from the server.`];
  return ["error", `${what} failed (${err.status}): ${err.message}`];
}

function cell(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "number") return Number.isInteger(value) ? formatCount(value) : formatScore(value);
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value) && value.every((v) => typeof v !== "object")) return value.join(", ");
  if (typeof value === "object") return h("code", {}, JSON.stringify(value));
  return String(value);
}

function dateCell(value) {
  if (!value) return "—";
  const when = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(when.getTime()) ? String(value) : h("time", { datetime: when.toISOString() }, when.toLocaleString());
}

/** A table of objects: the given columns first, then any other keys the rows have (up to `max`). */
function table(rows, columns, { max = 8, caption, rowClass } = {}) {
  const keys = [...columns];
  for (const row of rows) for (const key of Object.keys(row)) if (!keys.includes(key) && keys.length < max) keys.push(key);
  const present = keys.filter((key) => rows.some((row) => row[key] !== undefined));
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "data" },
      caption && h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, present.map((key) => h("th", { scope: "col" }, key.replaceAll("_", " "))))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            { class: rowClass?.(row) },
            present.map((key) => h("td", {}, /_at$|^(created|updated|valid_from|valid_to|loaded)/.test(key) ? dateCell(row[key]) : cell(row[key]))),
          ),
        ),
      ),
    ),
  );
}

function keyValues(object, skip = []) {
  const entries = Object.entries(object).filter(([key, value]) => !skip.includes(key) && (typeof value !== "object" || value === null || Array.isArray(value)));
  return h(
    "dl",
    { class: "kv" },
    entries.map(([key, value]) => [h("dt", {}, key.replaceAll("_", " ")), h("dd", {}, /_at$/.test(key) ? dateCell(value) : cell(value))]),
  );
}

// ---- index versions ---------------------------------------------------------------------------------------

function versionLabel(version) {
  return typeof version === "number" ? `v${version}` : version ?? "—";
}

function jobRows(jobs) {
  return jobs.map((job) => ({
    job: job.job_id,
    kind: job.kind,
    phase: job.phase,
    versions: `${versionLabel(job.from_version)} → ${versionLabel(job.to_version)}`,
    progress: `${formatCount(job.done ?? 0)} / ${formatCount(job.total ?? 0)}`,
    message: job.message,
    updated_at: job.updated_at,
  }));
}

async function loadIndices() {
  const card = cards.indices;
  show(card, "loading", "Loading…");
  try {
    const data = await admin("indices", "GET", "admin/indices");
    const versions = Array.isArray(data) ? data : data?.versions ?? [];
    const jobs = Array.isArray(data?.jobs) ? data.jobs : [];
    state.ledgerCounts = data?.events ?? null;
    const live = versions.find((v) => v.live);
    show(
      card,
      "ok",
      "",
      h(
        "p",
        {},
        "Alias ",
        h("code", {}, data?.alias ?? "—"),
        " → ",
        h("strong", { class: "live-version" }, live ? live.name ?? versionLabel(live.version) : "no live version"),
        data?.engine && h("span", { class: "muted" }, ` (${data.engine} engine)`),
      ),
      versions.length
        ? table(
            versions.map((v) => ({
              version: v.name ?? versionLabel(v.version),
              items: v.count,
              model: v.model_id,
              dimension: v.dimension,
              created_at: v.created_at,
              live: v.live ? "live" : "",
            })),
            ["version", "items", "model", "dimension", "created_at", "live"],
            { caption: "Index versions", rowClass: (row) => (row.live ? "live" : null) },
          )
        : h("p", { class: "muted" }, "No versions."),
      jobs.length > 0 && [h("h3", {}, "Recent jobs"), table(jobRows(jobs.slice(0, 5)), ["job", "kind", "phase", "versions", "progress", "message", "updated_at"], { caption: "Recent jobs" })],
    );
    // A job already running (started elsewhere: the CLI, another tab) is followed here too.
    const running = jobs.find((job) => !TERMINAL_PHASES.has(phaseOf(job)));
    if (running && !state.polling) follow(running.job_id);
  } catch (err) {
    const [status, message] = failure(err, "GET /admin/indices");
    if (status !== "unavailable") {
      show(card, status, message, "");
      return;
    }
    // Without the admin endpoint, the readiness probe still tells which version is live.
    try {
      const ready = await request("ready", "GET", "readyz");
      show(
        card,
        "unavailable",
        message,
        h("p", { class: "muted" }, "The live version, from /readyz:"),
        keyValues({ engine: ready.engine, alias: ready.alias, live_version: ready.version, items: ready.count }),
      );
    } catch (readyErr) {
      show(card, "unavailable", message, h("p", { class: "muted" }, failure(readyErr, "GET /readyz")[1]));
    }
  }
  renderDlqFallback();
}

// ---- reindex ----------------------------------------------------------------------------------------------

function jobIdOf(body) {
  if (!body || typeof body !== "object") return null;
  const direct = body.job_id ?? body.id ?? body.job?.job_id ?? body.job?.id;
  if (direct) return String(direct);
  for (const d of Array.isArray(body.detail) ? body.detail : []) {
    if (d?.job_id) return String(d.job_id);
  }
  return null;
}

function phaseOf(job) {
  return String(job?.phase ?? job?.state ?? job?.status ?? "unknown").toLowerCase();
}

function renderJob(job, jobId) {
  const phase = phaseOf(job);
  const done = Number(job.done ?? 0);
  const total = Number(job.total ?? 0);
  const percent = total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : null;
  const errors = Array.isArray(job.errors) ? job.errors : [];
  const parts = [`${formatCount(done)} / ${total ? formatCount(total) : "?"}`];
  if (percent !== null) parts.push(`${percent}%`);
  const rate = job.rate_per_s ?? job.rate;
  if (typeof rate === "number" && rate > 0) parts.push(`${formatCount(rate)} items/s`);
  if (typeof job.eta_s === "number" && !TERMINAL_PHASES.has(phase)) parts.push(`ETA ${Math.ceil(job.eta_s)} s`);
  if (job.embedded) parts.push(`${formatCount(job.embedded)} embedded`);
  parts.push(`${formatCount(errors.length || Number(job.errors) || 0)} errors`);
  const progress = h("progress", {
    max: total > 0 ? String(total) : null,
    "aria-label": "Reindex progress",
    "aria-valuetext": parts.join(", "),
  });
  if (total > 0) progress.value = done;
  const card = cards.reindex;
  fill(
    card.body,
    h(
      "p",
      {},
      `${job.kind ?? "reindex"} `,
      h("code", {}, jobId),
      job.from_version !== undefined && ` · ${versionLabel(job.from_version)} → ${versionLabel(job.to_version)}`,
      " · phase ",
      h("strong", { class: "phase", dataset: { phase } }, phase),
    ),
    progress,
    h("p", { class: "progress-text" }, parts.join(" · ")),
    job.message && h("p", { class: "job-message muted" }, String(job.message)),
    errors.length > 0 && h("ul", { class: "error" }, errors.slice(-5).map((e) => h("li", {}, typeof e === "string" ? e : JSON.stringify(e)))),
  );
  card.root.dataset.phase = phase;
}

function stopPolling() {
  if (state.polling) clearTimeout(state.polling.timer);
  state.polling = null;
  els.reindexCancel.hidden = true;
}

function follow(jobId) {
  stopPolling();
  storage()?.setItem(JOB_STORE, jobId);
  const card = cards.reindex;
  els.reindexStart.disabled = true;
  els.reindexCancel.hidden = false;
  els.reindexCancel.disabled = false;
  const polling = { jobId, failures: 0, phase: null, timer: null };
  state.polling = polling;
  show(card, "running", `Following job ${jobId}.`);
  const finish = () => {
    stopPolling();
    storage()?.removeItem(JOB_STORE);
    els.reindexStart.disabled = false;
  };
  const tick = async () => {
    if (state.polling !== polling) return;
    let job;
    try {
      job = await admin("reindex job", "GET", `admin/reindex/${encodeURIComponent(jobId)}`);
      polling.failures = 0;
    } catch (err) {
      if (state.polling !== polling) return;
      polling.failures++;
      const gone = err instanceof ApiError && (err.missing || err.status === 401 || err.status === 403);
      if (gone || polling.failures >= MAX_POLL_FAILURES) {
        finish();
        show(card, "error", failure(err, `GET /admin/reindex/${jobId}`)[1]);
        return;
      }
      polling.timer = setTimeout(tick, POLL_MS * 2); // a blip (the server restarting): keep following
      return;
    }
    if (state.polling !== polling) return;
    renderJob(job, jobId);
    const phase = phaseOf(job);
    if (phase !== polling.phase) {
      polling.phase = phase;
      card.status.textContent = `Job ${phase}.`; // announced once per phase, not on every tick
    }
    if (TERMINAL_PHASES.has(phase)) {
      finish();
      card.root.dataset.state = FAILED_PHASES.has(phase) ? "error" : "ok";
      loadIndices();
      return;
    }
    polling.timer = setTimeout(tick, POLL_MS);
  };
  tick();
}

async function startReindex() {
  const card = cards.reindex;
  els.reindexStart.disabled = true;
  show(card, "loading", "Starting a reindex…");
  try {
    const job = await admin("reindex", "POST", "admin/reindex", { body: {} });
    const jobId = jobIdOf(job);
    if (!jobId) {
      els.reindexStart.disabled = false;
      show(card, "error", "The reindex started but its answer names no job to follow.", keyValues(job ?? {}));
      return;
    }
    follow(jobId);
  } catch (err) {
    const running = err instanceof ApiError && err.status === 409 ? jobIdOf(err.body) : null;
    if (running) {
      follow(running);
      card.status.textContent = `A job is already running (${running}); following it.`;
      return;
    }
    els.reindexStart.disabled = false;
    const [status, message] = failure(err, "POST /admin/reindex");
    show(card, status, message);
  }
}

async function cancelReindex() {
  const jobId = state.polling?.jobId;
  if (!jobId) return;
  els.reindexCancel.disabled = true;
  try {
    await admin("cancel", "POST", `admin/reindex/${encodeURIComponent(jobId)}/cancel`);
    cards.reindex.status.textContent = `Cancelling ${jobId}…`;
  } catch (err) {
    els.reindexCancel.disabled = false;
    cards.reindex.status.textContent = failure(err, "POST /admin/reindex/{job_id}/cancel")[1];
  }
}

// ---- model, dead letters, rules ---------------------------------------------------------------------------

function flattenMetrics(metrics, prefix = "") {
  const rows = [];
  for (const [key, value] of Object.entries(metrics ?? {})) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (value && typeof value === "object" && !Array.isArray(value)) rows.push(...flattenMetrics(value, name));
    else rows.push({ metric: name, value });
  }
  return rows;
}

async function loadModel() {
  const card = cards.model;
  show(card, "loading", "Loading…");
  try {
    const data = (await admin("model", "GET", "admin/model")) ?? {};
    const metrics = flattenMetrics(data.metrics ?? data.evaluation ?? {});
    show(
      card,
      "ok",
      "",
      keyValues(data, ["metrics", "evaluation", "features", "params", "parameters"]),
      Array.isArray(data.features) && h("p", { class: "muted" }, `${data.features.length} features`),
      metrics.length ? table(metrics, ["metric", "value"], { caption: "Evaluation" }) : h("p", { class: "muted" }, "No evaluation numbers."),
    );
  } catch (err) {
    const [status, message] = failure(err, "GET /admin/model");
    show(card, status, message, "");
  }
}

function renderDlqFallback() {
  if (!state.dlqMissing) return;
  const dead = state.ledgerCounts?.dead;
  if (typeof dead === "number") {
    show(cards.dlq, "ok", "From the ledger counts of /admin/indices.", h("p", { class: "big-number", dataset: { count: String(dead) } }, formatCount(dead)));
  }
}

async function loadDlq() {
  const card = cards.dlq;
  show(card, "loading", "Loading…");
  state.dlqMissing = false;
  try {
    const data = await admin("dlq", "GET", "admin/dlq");
    const events = Array.isArray(data) ? data : data?.events ?? data?.items ?? [];
    const count = typeof data?.count === "number" ? data.count : events.length;
    show(
      card,
      "ok",
      "",
      h("p", { class: "big-number", dataset: { count: String(count) } }, formatCount(count)),
      h("p", { class: "muted" }, count === 1 ? "event failed after its retries" : "events failed after their retries"),
      events.length > 0 && table(events.slice(0, 10), ["event_id", "item_id", "op", "attempts", "error"], { caption: "Dead-lettered events" }),
    );
  } catch (err) {
    const [status, message] = failure(err, "GET /admin/dlq");
    state.dlqMissing = status === "unavailable";
    show(card, status, message, "");
    renderDlqFallback();
  }
}

async function loadRules() {
  const card = cards.rules;
  show(card, "loading", "Loading…");
  try {
    const data = await admin("rules", "GET", "admin/rules");
    const rules = Array.isArray(data) ? data : data?.rules ?? data?.items ?? [];
    show(
      card,
      "ok",
      `${formatCount(rules.length)} rule${rules.length === 1 ? "" : "s"}.`,
      rules.length ? table(rules, ["id", "name", "action", "query", "match", "filter", "valid_from", "valid_to"], { caption: "Rules" }) : "",
    );
  } catch (err) {
    const [status, message] = failure(err, "GET /admin/rules");
    show(card, status, message, "");
  }
}

function loadAll() {
  loadIndices();
  loadModel();
  loadDlq();
  loadRules();
}

// ---- wiring -----------------------------------------------------------------------------------------------

function start() {
  attachLatencyLog(els.latency);
  setKey(getKey());
  els.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    setKey(els.key.value.trim());
    els.key.value = "";
    loadAll();
  });
  els.forget.addEventListener("click", () => {
    setKey("");
    loadAll();
  });
  els.refresh.addEventListener("click", loadAll);
  els.reindexStart.addEventListener("click", startReindex);
  els.reindexCancel.addEventListener("click", cancelReindex);
  loadAll();
  const running = storage()?.getItem(JOB_STORE);
  if (running) follow(running);
  document.documentElement.dataset.ready = "true";
}

start();
