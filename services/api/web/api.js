// The HTTP client of both pages: JSON in and out, every request timed, errors typed.
// Paths are relative ("v1/search"), resolved against the page, so the app also works under a path prefix.

import { formatMs, h } from "./dom.js";

export class ApiError extends Error {
  /** status 0: no answer at all (network down, server gone). `body`: the parsed answer, when there was one. */
  constructor(status, body, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }

  /** The endpoint is not there (yet): not found, method not allowed, not implemented. */
  get missing() {
    return this.status === 404 || this.status === 405 || this.status === 501;
  }
}

const timingListeners = new Set();

/** `fn({label, method, path, status, ms})` after each request that got an answer (or failed to). */
export function onTiming(fn) {
  timingListeners.add(fn);
  return () => timingListeners.delete(fn);
}

function report(entry) {
  for (const fn of timingListeners) {
    try {
      fn(entry);
    } catch (err) {
      console.error(err);
    }
  }
}

/** The API's error body is `{"detail": [{"field", "message", "type"}]}`; say it in one line. */
export function describeError(body, fallback) {
  const detail = body?.detail;
  if (Array.isArray(detail) && detail.length) {
    return detail.map((d) => (d.field ? `${d.field}: ${d.message}` : d.message ?? JSON.stringify(d))).join("; ");
  }
  if (typeof detail === "string") return detail;
  return fallback;
}

export function url(path, params) {
  const u = new URL(path, document.baseURI);
  for (const [key, value] of Object.entries(params ?? {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) u.searchParams.append(key, String(v));
  }
  return u;
}

/**
 * One request. `label` names it in the latency footer. Resolves to the parsed JSON body (null when empty);
 * rejects with ApiError for an HTTP error or no answer, and with the DOMException "AbortError" when `signal`
 * aborted it (callers ignore those: a newer request replaced it).
 */
export async function request(label, method, path, { params, body, signal, headers, keepalive } = {}) {
  const target = url(path, params);
  const init = { method, signal, keepalive, headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const started = performance.now();
  const entry = { label, method, path: target.pathname, status: 0, ms: 0 };
  let response;
  let text;
  try {
    response = await fetch(target, init);
    text = await response.text();
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    entry.ms = performance.now() - started;
    report(entry);
    throw new ApiError(0, null, "no answer from the server");
  }
  entry.status = response.status;
  entry.ms = performance.now() - started;
  report(entry);
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    throw new ApiError(response.status, data, describeError(data, `${response.status} ${response.statusText}`));
  }
  return data;
}

/** Send and forget: nothing waits for it and no error surfaces (an analytics event must never break the page). */
export function fireAndForget(label, path, body) {
  request(label, "POST", path, { body, keepalive: true }).catch(() => {});
}

/**
 * Show the latest requests and their latency in `list` (an <ol>), newest first, at most `keep` of them.
 */
export function attachLatencyLog(list, keep = 6) {
  return onTiming(({ label, method, path, status, ms }) => {
    const ok = status >= 200 && status < 400;
    const item = h(
      "li",
      { class: ok ? "ok" : "bad", title: `${method} ${path}` },
      h("span", { class: "latency-label" }, label),
      " ",
      h("span", { class: "latency-status" }, status ? String(status) : "—"),
      " ",
      h("span", { class: "latency-ms", dataset: { ms: ms.toFixed(1) } }, formatMs(ms)),
    );
    list.prepend(item);
    while (list.children.length > keep) list.lastElementChild.remove();
  });
}
