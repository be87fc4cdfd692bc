// The instant-search page: results as you type, suggestions, facets, item details with similar items and
// recommendations, explain, and click reporting. Talks only to this server's API (see /docs).

import { ApiError, attachLatencyLog, fireAndForget, request } from "./api.js";
import { debounce, fill, formatCount, formatMs, formatScore, h, randomId } from "./dom.js";

const DEBOUNCE_MS = 120;
const PAGE_SIZE = 10;
const FACETS = ["categories", "brand", "tags"];
const FACET_LABELS = { categories: "Categories", brand: "Brand", tags: "Tags" };
const STAGE_LABELS = { fusion: "Fusion", scoring: "Scoring", reranking: "Re-ranking" };
const SUGGEST_ITEMS = 6;
const SUGGEST_COMPLETIONS = 4;
const PANEL_SIZE = 8;
const USER_KEY = "trawl.user_id";

const $ = (id) => document.getElementById(id);
const els = {
  form: $("search-form"),
  q: $("q"),
  suggestions: $("suggestions"),
  mode: $("mode"),
  explain: $("explain"),
  activeFilters: $("active-filters"),
  status: $("status"),
  facets: $("facets"),
  facetGroups: $("facet-groups"),
  results: $("results"),
  explainSummary: $("explain-summary"),
  list: $("result-list"),
  pager: $("pager"),
  detail: $("detail"),
  detailTitle: $("detail-title"),
  detailMeta: $("detail-meta"),
  detailBody: $("detail-body"),
  detailClose: $("detail-close"),
  similar: { section: $("similar"), status: $("similar-status"), list: $("similar-list") },
  recs: { section: $("recs"), status: $("recs-status"), list: $("recs-list") },
  userId: $("user-id"),
  latency: $("latency"),
};

const state = {
  q: "",
  page: 1,
  mode: "hybrid",
  explain: false,
  filters: [], // [{field, value}], each a {"term": {field: value}}, all of them required
  search: { seq: 0, controller: null, response: null },
  suggest: { seq: 0, controller: null, options: [], active: -1, queryId: null },
  detail: { seq: 0, controller: null, id: null },
  catalogSize: null,
};

const USER_ID = loadUserId();

// ---- the user ---------------------------------------------------------------------------------------------

function loadUserId() {
  let id = null;
  try {
    id = localStorage.getItem(USER_KEY);
  } catch {
    // storage disabled: an id for this page view only
  }
  if (!id) {
    id = `web-${randomId()}`;
    try {
      localStorage.setItem(USER_KEY, id);
    } catch {
      // as above
    }
  }
  return id;
}

/** A click, reported for the ranking to learn from; nobody waits for it and its errors are ignored. */
function reportClick(itemId, queryId, position) {
  if (!queryId) return;
  fireAndForget("interaction", "v1/events/interactions", {
    user_id: USER_ID,
    item_id: itemId,
    type: "click",
    query_id: queryId,
    position,
  });
}

// ---- filters and the address bar --------------------------------------------------------------------------

function buildFilter(filters) {
  const terms = filters.map(({ field, value }) => ({ term: { [field]: value } }));
  if (terms.length === 0) return null;
  return terms.length === 1 ? terms[0] : { and: terms };
}

function hasFilter(field, value) {
  return state.filters.some((f) => f.field === field && f.value === value);
}

function toggleFilter(field, value) {
  state.filters = hasFilter(field, value)
    ? state.filters.filter((f) => !(f.field === field && f.value === value))
    : [...state.filters, { field, value }];
  state.page = 1;
  renderActiveFilters();
  searchNow();
}

function clearFilters() {
  state.filters = [];
  state.page = 1;
  renderActiveFilters();
  searchNow();
  els.q.focus();
}

function readUrl() {
  const params = new URLSearchParams(location.search);
  state.q = params.get("q") ?? "";
  state.page = Math.max(1, Number.parseInt(params.get("page") ?? "1", 10) || 1);
  state.mode = ["hybrid", "keyword", "vector"].includes(params.get("mode")) ? params.get("mode") : "hybrid";
  state.explain = params.get("explain") === "1";
  state.filters = params
    .getAll("filter")
    .map((f) => {
      const at = f.indexOf(":");
      return at > 0 ? { field: f.slice(0, at), value: f.slice(at + 1) } : null;
    })
    .filter((f) => f && FACETS.includes(f.field));
}

function writeUrl() {
  const params = new URLSearchParams();
  if (state.q.trim()) params.set("q", state.q);
  if (state.page > 1) params.set("page", String(state.page));
  if (state.mode !== "hybrid") params.set("mode", state.mode);
  if (state.explain) params.set("explain", "1");
  for (const { field, value } of state.filters) params.append("filter", `${field}:${value}`);
  const query = params.toString();
  const target = `${location.pathname}${query ? `?${query}` : ""}`;
  if (target !== `${location.pathname}${location.search}`) history.replaceState(null, "", target);
}

// ---- search -----------------------------------------------------------------------------------------------

/**
 * Run the search for the current state. Each run takes a sequence number and aborts the one before it; an
 * answer that arrives after a newer run started is dropped, so the list always shows the latest query.
 */
async function search() {
  const seq = ++state.search.seq;
  state.search.controller?.abort();
  state.search.controller = null;
  writeUrl();
  const q = state.q.trim();
  if (!q) {
    showIdle();
    return;
  }
  const controller = new AbortController();
  state.search.controller = controller;
  els.results.setAttribute("aria-busy", "true");
  const body = { q, page: state.page, size: PAGE_SIZE, facets: FACETS, mode: state.mode, explain: state.explain };
  const filter = buildFilter(state.filters);
  if (filter) body.filter = filter;
  try {
    const data = await request("search", "POST", "v1/search", { body, signal: controller.signal });
    if (seq !== state.search.seq) return; // stale: a newer search has started
    state.search.response = data;
    renderResults(data);
  } catch (err) {
    if (seq !== state.search.seq || err?.name === "AbortError") return;
    renderSearchError(err);
  } finally {
    if (seq === state.search.seq) {
      els.results.removeAttribute("aria-busy");
      state.search.controller = null;
    }
  }
}

const typed = debounce((text) => {
  suggest(text);
  search();
}, DEBOUNCE_MS);

function searchNow() {
  typed.cancel();
  search();
}

function showIdle() {
  state.search.response = null;
  els.results.removeAttribute("aria-busy");
  els.results.dataset.q = "";
  els.status.classList.remove("error");
  fill(els.list);
  els.facets.hidden = true;
  els.pager.hidden = true;
  els.explainSummary.hidden = true;
  els.status.textContent =
    state.catalogSize === null
      ? "Type to search."
      : `Type to search ${formatCount(state.catalogSize)} items.`;
}

function renderSearchError(err) {
  fill(els.list);
  els.pager.hidden = true;
  els.explainSummary.hidden = true;
  const why = err instanceof ApiError ? err.message : String(err);
  els.status.textContent = `Search failed: ${why}`;
  els.status.classList.add("error");
}

function renderResults(data) {
  const { items, total, page, size, q } = data;
  els.status.classList.remove("error");
  const scope = state.filters.length ? ` with ${state.filters.length} filter${state.filters.length > 1 ? "s" : ""}` : "";
  els.status.textContent = total
    ? `${formatCount(total)} result${total === 1 ? "" : "s"} for “${q}”${scope}`
    : `No results for “${q}”${scope}.`;
  if (total && !items.length) els.status.textContent += ` (nothing on page ${page})`;
  els.results.dataset.q = q;
  els.list.start = (page - 1) * size + 1;
  fill(els.list, items.map((hit) => resultItem(hit, data)));
  renderFacets(data.facets ?? {});
  renderExplainSummary(data.explain);
  renderPager(data);
}

function yearOf(item) {
  const year = item.attributes?.year;
  if (typeof year === "number" || typeof year === "string") return String(year);
  return item.published_at ? String(new Date(item.published_at).getUTCFullYear()) : null;
}

function metaParts(item) {
  const parts = [];
  if (item.brand) parts.push(item.brand);
  if (item.categories?.length) parts.push(item.categories.join(", "));
  if (item.tags?.length) parts.push(item.tags.join(", "));
  if (typeof item.rating === "number") parts.push(`★ ${item.rating.toFixed(1)}`);
  if (typeof item.price === "number") parts.push(item.price.toFixed(2));
  return parts;
}

function resultItem(hit, data) {
  const item = hit.item;
  const year = yearOf(item);
  const titleId = `hit-title-${hit.rank}`;
  return h(
    "li",
    { class: "hit", dataset: { id: hit.id, rank: String(hit.rank) }, "aria-current": state.detail.id === hit.id && "true" },
    h(
      "article",
      { "aria-labelledby": titleId },
      h(
        "h3",
        { class: "hit-title" },
        h(
          "button",
          {
            type: "button",
            id: titleId,
            class: "link",
            "aria-controls": "detail",
            dataset: { focusKey: `hit:${hit.id}` },
            onclick: () => openItem(item, { queryId: data.query_id, position: hit.rank }),
          },
          item.title || hit.id,
        ),
        year && h("span", { class: "year" }, ` (${year})`),
      ),
      h("p", { class: "meta" }, metaParts(item).join(" · ")),
      hit.explain && explainBlock(hit, data),
    ),
  );
}

// ---- explain ----------------------------------------------------------------------------------------------

function stageRow(label, stage, score) {
  return h(
    "tr",
    { dataset: { stage } },
    h("th", { scope: "row" }, label),
    h("td", {}, score ? formatScore(score.score) : "—"),
    h("td", {}, score ? `#${score.rank}` : "not found"),
  );
}

function explainBlock(hit, data) {
  const e = hit.explain;
  const legs = (data.explain?.legs ?? []).map((leg) => leg.name);
  const retrievers = [...new Set([...legs, ...Object.keys(e.retrievers)])];
  const features = Object.entries(e.features ?? {});
  return h(
    "div",
    { class: "explain" },
    h(
      "table",
      { class: "stages" },
      h("caption", { class: "visually-hidden" }, `How “${hit.item.title || hit.id}” was ranked, stage by stage`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Stage"), h("th", { scope: "col" }, "Score"), h("th", { scope: "col" }, "Rank"))),
      h(
        "tbody",
        {},
        retrievers.map((name) => stageRow(`Retriever: ${name}`, `retriever-${name}`, e.retrievers[name])),
        Object.entries(STAGE_LABELS).map(([stage, label]) => stageRow(label, stage, e[stage])),
      ),
    ),
    e.rules?.length
      ? h(
          "ul",
          { class: "rules", "aria-label": "Rules applied" },
          e.rules.map((r) =>
            h(
              "li",
              { dataset: { rule: r.rule } },
              h("strong", {}, r.rule),
              ` ${r.action}${r.delta ? ` ${r.delta > 0 ? "+" : ""}${formatScore(r.delta)}` : ""}`,
              r.detail && h("span", { class: "muted" }, ` — ${r.detail}`),
            ),
          ),
        )
      : h("p", { class: "rules muted" }, "No rules applied."),
    features.length > 0 &&
      h(
        "details",
        { class: "features" },
        h("summary", {}, `Features (${features.length})`),
        h(
          "dl",
          {},
          features.map(([name, value]) => [h("dt", {}, name), h("dd", {}, formatScore(value))]),
        ),
      ),
  );
}

function renderExplainSummary(explain) {
  if (!explain) {
    els.explainSummary.hidden = true;
    fill(els.explainSummary);
    return;
  }
  const legs = explain.legs.map((leg) =>
    h(
      "li",
      { dataset: { leg: leg.name } },
      h("strong", {}, leg.name),
      ` ${formatCount(leg.hits)} hit${leg.hits === 1 ? "" : "s"} in ${formatMs(leg.ms)}`,
      leg.skipped && h("span", { class: "muted" }, ` (skipped: ${leg.skipped})`),
    ),
  );
  const timings = Object.entries(explain.timings_ms ?? {}).map(([stage, ms]) => `${stage} ${formatMs(ms)}`);
  fill(
    els.explainSummary,
    h("h3", {}, "How this list was made"),
    h("ul", { class: "legs", "aria-label": "Retrievers" }, legs),
    h(
      "p",
      {},
      `Fusion: ${explain.fusion} → scorer: ${explain.scorer} → re-ranker: ${explain.reranker}; `,
      `depth ${explain.depth} per retriever.`,
    ),
    timings.length > 0 && h("p", { class: "muted" }, `Stage timings: ${timings.join(", ")}.`),
  );
  els.explainSummary.hidden = false;
}

// ---- facets, filters, pages ---------------------------------------------------------------------------------

/** Re-rendering replaces buttons; keep the keyboard where it was (same data-focus-key) afterwards. */
function keepingFocus(container, render) {
  const key = container.contains(document.activeElement) ? document.activeElement.dataset.focusKey : undefined;
  render();
  if (key) {
    const again = [...container.querySelectorAll("[data-focus-key]")].find((el) => el.dataset.focusKey === key);
    (again ?? els.q).focus();
  }
}

function renderFacets(facets) {
  keepingFocus(els.facets, () => {
    const groups = FACETS.filter((field) => facets[field]?.length).map((field) =>
      h(
        "section",
        { class: "facet", "aria-labelledby": `facet-${field}` },
        h("h3", { id: `facet-${field}` }, FACET_LABELS[field] ?? field),
        h(
          "ul",
          {},
          facets[field].map(({ value, count }) =>
            h(
              "li",
              {},
              h(
                "button",
                {
                  type: "button",
                  class: "facet-value",
                  "aria-pressed": String(hasFilter(field, value)),
                  dataset: { field, value, focusKey: `facet:${field}:${value}` },
                  onclick: () => toggleFilter(field, value),
                },
                h("span", { class: "facet-name" }, value),
                h("span", { class: "facet-count" }, formatCount(count), h("span", { class: "visually-hidden" }, " results")),
              ),
            ),
          ),
        ),
      ),
    );
    fill(els.facetGroups, groups);
    els.facets.hidden = groups.length === 0;
  });
}

function renderActiveFilters() {
  keepingFocus(els.activeFilters, () => {
    els.activeFilters.hidden = state.filters.length === 0;
    fill(
      els.activeFilters,
      state.filters.length > 0 && h("span", { class: "label" }, "Filters:"),
      state.filters.map(({ field, value }) =>
        h(
          "button",
          {
            type: "button",
            class: "chip",
            "aria-label": `Remove filter ${FACET_LABELS[field] ?? field}: ${value}`,
            dataset: { field, value, focusKey: `chip:${field}:${value}` },
            onclick: () => toggleFilter(field, value),
          },
          h("span", { class: "muted" }, `${FACET_LABELS[field] ?? field}: `),
          value,
          h("span", { "aria-hidden": "true" }, " ×"),
        ),
      ),
      state.filters.length > 1 && h("button", { type: "button", class: "link", onclick: clearFilters }, "Clear all"),
    );
  });
}

function renderPager({ total, page, size }) {
  const pages = Math.ceil(total / size);
  els.pager.hidden = pages <= 1;
  if (pages <= 1) return fill(els.pager);
  const go = (to) => () => {
    state.page = to;
    searchNow();
    els.results.focus({ preventScroll: true });
    els.results.scrollIntoView({ block: "start" });
  };
  fill(
    els.pager,
    h("button", { type: "button", disabled: page <= 1, onclick: go(page - 1) }, "← Previous"),
    h("span", { "aria-current": "page" }, `Page ${page} of ${formatCount(pages)}`),
    h("button", { type: "button", disabled: page >= pages, onclick: go(page + 1) }, "Next →"),
  );
}

// ---- suggestions (a combobox: https://www.w3.org/WAI/ARIA/apg/patterns/combobox/) ---------------------------------

async function suggest(text) {
  const seq = ++state.suggest.seq;
  state.suggest.controller?.abort();
  state.suggest.controller = null;
  if (!text.trim()) {
    closeSuggestions();
    return;
  }
  const controller = new AbortController();
  state.suggest.controller = controller;
  try {
    const data = await request("suggest", "GET", "v1/suggest", {
      params: { q: text, size: SUGGEST_ITEMS, completions: SUGGEST_COMPLETIONS },
      signal: controller.signal,
    });
    if (seq !== state.suggest.seq) return;
    const typedText = text.trim().toLowerCase();
    state.suggest.queryId = data.query_id;
    renderSuggestions(text, [
      ...data.completions
        .filter((c) => c.text !== typedText)
        .map((c) => ({ kind: "completion", text: c.text })),
      ...data.items.map((s, i) => ({ kind: "item", id: s.id, item: s.item, position: i + 1 })),
    ]);
  } catch (err) {
    if (seq === state.suggest.seq && err?.name !== "AbortError") closeSuggestions();
  }
}

function suggestionContent(option, text) {
  if (option.kind === "completion") {
    const typedText = text.trimStart().toLowerCase();
    const head = option.text.startsWith(typedText) ? typedText : "";
    return [
      h("span", { class: "suggestion-kind", "aria-hidden": "true" }, "⌕"),
      h("span", { class: "suggestion-text" }, head, h("strong", {}, option.text.slice(head.length))),
    ];
  }
  const year = yearOf(option.item);
  return [
    h("span", { class: "suggestion-kind", "aria-hidden": "true" }, "▸"),
    h("span", { class: "suggestion-text" }, option.item.title || option.id, year && h("span", { class: "year" }, ` (${year})`)),
    option.item.brand && h("span", { class: "suggestion-meta" }, option.item.brand),
  ];
}

function renderSuggestions(text, options) {
  state.suggest.options = options;
  state.suggest.active = -1;
  els.q.removeAttribute("aria-activedescendant");
  if (!options.length || document.activeElement !== els.q) {
    hideSuggestions();
    return;
  }
  fill(
    els.suggestions,
    options.map((option, i) =>
      h(
        "li",
        {
          id: `suggestion-${i}`,
          role: "option",
          "aria-selected": "false",
          class: `suggestion ${option.kind}`,
          dataset: { kind: option.kind },
          onclick: () => choose(i),
        },
        suggestionContent(option, text),
      ),
    ),
  );
  els.suggestions.hidden = false;
  els.q.setAttribute("aria-expanded", "true");
}

function suggestionsOpen() {
  return !els.suggestions.hidden;
}

function hideSuggestions() {
  els.suggestions.hidden = true;
  els.q.setAttribute("aria-expanded", "false");
  els.q.removeAttribute("aria-activedescendant");
  state.suggest.active = -1;
}

/** Close the list and drop any suggestion request still on its way (it must not reopen the list). */
function closeSuggestions() {
  state.suggest.seq++;
  state.suggest.controller?.abort();
  state.suggest.controller = null;
  hideSuggestions();
}

function setActive(index) {
  const options = els.suggestions.querySelectorAll('[role="option"]');
  options.forEach((el, i) => el.setAttribute("aria-selected", String(i === index)));
  state.suggest.active = index;
  const active = options[index];
  if (active) {
    els.q.setAttribute("aria-activedescendant", active.id);
    active.scrollIntoView({ block: "nearest" });
  } else {
    els.q.removeAttribute("aria-activedescendant");
  }
}

function choose(index) {
  const option = state.suggest.options[index];
  if (!option) return;
  const queryId = state.suggest.queryId;
  closeSuggestions();
  const text = option.kind === "completion" ? option.text : option.item.title || option.id;
  els.q.value = text;
  state.q = text;
  state.page = 1;
  searchNow();
  if (option.kind === "item") openItem(option.item, { queryId, position: option.position, focus: false });
}

function onKeyDown(event) {
  const count = state.suggest.options.length;
  switch (event.key) {
    case "ArrowDown":
      if (!count) return;
      event.preventDefault();
      if (!suggestionsOpen()) {
        renderSuggestions(els.q.value, state.suggest.options);
        setActive(0);
      } else {
        setActive((state.suggest.active + 1) % count);
      }
      break;
    case "ArrowUp":
      if (!count || !suggestionsOpen()) return;
      event.preventDefault();
      setActive(state.suggest.active <= 0 ? count - 1 : state.suggest.active - 1);
      break;
    case "Enter":
      if (suggestionsOpen() && state.suggest.active >= 0) {
        event.preventDefault();
        choose(state.suggest.active);
      }
      break; // otherwise the form's submit searches at once
    case "Escape":
      if (suggestionsOpen()) {
        event.preventDefault();
        closeSuggestions();
      } else if (els.q.value) {
        event.preventDefault();
        els.q.value = "";
        state.q = "";
        state.suggest.options = [];
        searchNow();
      }
      break;
    case "Tab":
      closeSuggestions();
      break;
    default:
  }
}

// ---- item details: similar items and recommendations ------------------------------------------------------

function openItem(item, { queryId, position, focus = true } = {}) {
  reportClick(item.id, queryId, position);
  const seq = ++state.detail.seq;
  state.detail.controller?.abort();
  const controller = new AbortController();
  state.detail.controller = controller;
  state.detail.id = item.id;
  const year = yearOf(item);
  els.detail.dataset.id = item.id;
  els.detailTitle.textContent = `${item.title || item.id}${year ? ` (${year})` : ""}`;
  els.detailMeta.textContent = metaParts(item).join(" · ");
  els.detailBody.textContent = item.body ?? "";
  els.detailBody.hidden = !item.body;
  els.detail.hidden = false;
  for (const li of els.list.children) {
    if (li.dataset.id === item.id) li.setAttribute("aria-current", "true");
    else li.removeAttribute("aria-current");
  }
  loadSimilar(item.id, seq, controller.signal);
  loadRecommendations(item.id, seq, controller.signal);
  if (focus) els.detailTitle.focus();
}

function closeDetail() {
  state.detail.seq++;
  state.detail.controller?.abort();
  const id = state.detail.id;
  state.detail.id = null;
  els.detail.hidden = true;
  delete els.detail.dataset.id;
  const back = [...els.list.querySelectorAll("[data-focus-key]")].find((el) => el.dataset.focusKey === `hit:${id}`);
  for (const li of els.list.children) li.removeAttribute("aria-current");
  (back ?? els.q).focus();
}

function panelBusy(panel, message) {
  panel.section.setAttribute("aria-busy", "true");
  delete panel.section.dataset.unavailable;
  panel.status.hidden = false;
  panel.status.textContent = message;
  panel.status.classList.remove("error");
  fill(panel.list);
}

function panelDone(panel, message, { error = false } = {}) {
  panel.section.setAttribute("aria-busy", "false");
  panel.status.textContent = message;
  panel.status.hidden = !message;
  panel.status.classList.toggle("error", error);
}

function miniItem(hit, index, queryId) {
  const item = hit.item ?? { id: hit.id, title: hit.title ?? hit.id };
  const year = yearOf(item);
  const details = [];
  if (item.brand) details.push(item.brand);
  if (typeof hit.score === "number") details.push(`score ${formatScore(hit.score)}`);
  // a list of names, or (recommendations) each source mapped to its score and rank
  const sources = Array.isArray(hit.sources) ? hit.sources : Object.keys(hit.sources ?? {});
  if (sources.length) details.push(`via ${sources.join(", ")}`);
  return h(
    "li",
    { dataset: { id: hit.id ?? item.id } },
    h(
      "button",
      {
        type: "button",
        class: "mini",
        onclick: () => openItem(item, { queryId, position: hit.rank ?? index + 1 }),
      },
      h("span", { class: "mini-title" }, item.title || item.id, year && h("span", { class: "year" }, ` (${year})`)),
      details.length > 0 && h("span", { class: "mini-meta" }, details.join(" · ")),
    ),
  );
}

async function loadSimilar(id, seq, signal) {
  const panel = els.similar;
  panelBusy(panel, "Loading similar items…");
  try {
    const data = await request("similar", "GET", `v1/items/${encodeURIComponent(id)}/similar`, {
      params: { size: PANEL_SIZE },
      signal,
    });
    if (seq !== state.detail.seq) return;
    fill(panel.list, data.items.map((hit, i) => miniItem(hit, i, data.query_id)));
    panelDone(panel, data.items.length ? "" : "No similar items.");
  } catch (err) {
    if (seq !== state.detail.seq || err?.name === "AbortError") return;
    panelDone(panel, `Similar items unavailable: ${err.message}`, { error: true });
  }
}

async function loadRecommendations(id, seq, signal) {
  const panel = els.recs;
  panelBusy(panel, "Loading recommendations…");
  try {
    const data = await request("recommendations", "POST", "v1/recommendations", {
      body: { seed_item_ids: [id] },
      signal,
    });
    if (seq !== state.detail.seq) return;
    const hits = Array.isArray(data?.items) ? data.items : [];
    fill(panel.list, hits.map((hit, i) => miniItem(hit, i, data.query_id)));
    panelDone(panel, hits.length ? "" : "No recommendations for this item.");
  } catch (err) {
    if (seq !== state.detail.seq || err?.name === "AbortError") return;
    const missing = err instanceof ApiError && err.missing;
    panelDone(panel, missing ? "Recommendations unavailable." : `Recommendations unavailable: ${err.message}`, {
      error: !missing,
    });
    panel.section.dataset.unavailable = "true";
  }
}

// ---- wiring -----------------------------------------------------------------------------------------------

async function loadCatalogSize() {
  try {
    const ready = await request("ready", "GET", "readyz");
    state.catalogSize = typeof ready?.count === "number" ? ready.count : null;
  } catch {
    state.catalogSize = null;
  }
  if (!state.q.trim()) showIdle();
}

function start() {
  attachLatencyLog(els.latency);
  els.userId.textContent = USER_ID;
  readUrl();
  els.q.value = state.q;
  els.mode.value = state.mode;
  els.explain.checked = state.explain;
  renderActiveFilters();

  els.q.addEventListener("input", () => {
    state.q = els.q.value;
    state.page = 1;
    if (!state.q.trim()) {
      typed.cancel();
      closeSuggestions();
      state.suggest.options = [];
      search();
      return;
    }
    typed(els.q.value);
  });
  els.q.addEventListener("keydown", onKeyDown);
  els.q.addEventListener("blur", () => hideSuggestions());
  // Keep the focus in the field while a suggestion is clicked.
  els.suggestions.addEventListener("pointerdown", (event) => event.preventDefault());
  els.form.addEventListener("submit", (event) => {
    event.preventDefault();
    closeSuggestions();
    state.q = els.q.value;
    state.page = 1;
    searchNow();
  });
  els.mode.addEventListener("change", () => {
    state.mode = els.mode.value;
    state.page = 1;
    searchNow();
  });
  els.explain.addEventListener("change", () => {
    state.explain = els.explain.checked;
    searchNow();
  });
  els.detailClose.addEventListener("click", closeDetail);
  els.detail.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeDetail();
  });
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const editing = target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
    if (event.key === "/" && !editing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      els.q.focus();
      els.q.select();
    }
  });

  showIdle();
  loadCatalogSize();
  if (state.q.trim()) search();
  document.documentElement.dataset.ready = "true";
}

start();
