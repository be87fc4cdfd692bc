// A few DOM helpers. Text always goes in as text nodes, never as HTML, so catalog data cannot inject markup.

/**
 * Build an element: h("button", {class: "x", type: "button", onclick: fn, "aria-pressed": "false"}, "text", child)
 * Attributes: `class`, `text`, `dataset` (object), `on<event>` handlers, booleans (true: present, false: absent),
 * anything else as an attribute. Children: strings, numbers, nodes, arrays of those; null/undefined/false skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Call `fn` once `ms` have passed without another call; `.flush()` runs a pending call now, `.cancel()` drops it. */
export function debounce(fn, ms) {
  let timer = null;
  let pending = null;
  const debounced = (...args) => {
    pending = args;
    clearTimeout(timer);
    timer = setTimeout(() => debounced.flush(), ms);
  };
  debounced.flush = () => {
    clearTimeout(timer);
    if (pending) {
      const args = pending;
      pending = null;
      fn(...args);
    }
  };
  debounced.cancel = () => {
    clearTimeout(timer);
    pending = null;
  };
  return debounced;
}

const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

export function formatCount(n) {
  return numberFormat.format(n);
}

/** A score for people: 4 significant digits, no exponent for the usual ranges. */
export function formatScore(x) {
  if (typeof x !== "number" || !Number.isFinite(x)) return "—";
  if (x !== 0 && Math.abs(x) < 0.001) return x.toExponential(2);
  return Number(x.toPrecision(4)).toString();
}

export function formatMs(ms) {
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

/** A random id that works outside secure contexts too (crypto.randomUUID needs https or localhost). */
export function randomId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
