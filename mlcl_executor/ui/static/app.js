// The mlcl search page: talks to the Flow that served it (same origin) over its
// documented HTTP API (POST /search, POST /count). Every text it shows goes
// through textContent; the only images it shows are data: URIs: an upload it
// read itself, and gallery thumbnails the Flow serves by id (POST /ui/thumbnails,
// one request for all the cards of an answer).
"use strict";

const LEVEL_TITLES = {
  low: "low: sum of image + text features",
  mid: "mid: concatenation combiner",
  high: "high: hybrid fusion (CLIP4Cir's combiner)",
};
const TIMEOUT_MS = 60000;

const state = {
  settings: { title: "mlcl search", captions: [], examples_text: "", examples: 0, default_limit: 10, max_limit: 100, levels: true,
              facet: null, facet_values: [], thumbnails_per_request: 400 },
  reference: null, // {image: data URI or null, id: gallery id or null, label: text, preview: false when there is none to show,
                   //  gallery: true for a result, which is sent by its id (the Flow uses the indexed image itself)}
  steps: [], // [{reference, caption, limit, levels, facet, answer, more, thumbnails}]
  current: -1, // index into steps of what the results show
  facet: null, // the value of settings.facet the results are narrowed to (null: all)
  facetValues: [], // the values offered (settings.facet_values, else those seen on cards)
};
// Formats a browser may not show but the Flow reads (the reference is then sent without a preview).
const NO_PREVIEW = /^image\/tiff$/i;
const NO_PREVIEW_NAME = /\.tiff?$/i;

// $ and el: dom.js

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

// ------------------------------------------------------------------ messages
function showMessage(text, kind) {
  const box = $("message");
  box.textContent = text;
  box.className = "message" + (kind === "error" ? " error" : "");
  box.hidden = false;
}

function hideMessage() {
  $("message").hidden = true;
}

function setStatus(text, ok) {
  const status = $("status");
  status.textContent = text;
  status.className = "status " + (ok ? "ok" : "bad");
}

// ------------------------------------------------------------------- the API
class FlowError extends Error {}

// {response, answer} of a JSON POST to this Flow (answer: null when the body is not JSON); FlowError when unreachable.
async function postJSON(endpoint, body) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  let response;
  try {
    response = await fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
  } catch (err) {
    const why = err && err.name === "AbortError" ? "no answer within " + TIMEOUT_MS / 1000 + " s" : String(err && err.message || err);
    throw new FlowError("Cannot reach the Flow at " + window.location.origin + " (" + why + "). Is `mlcl serve` still running?");
  } finally {
    clearTimeout(timer);
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch (err) {
    answer = null;
  }
  return { response: response, answer: answer };
}

async function post(endpoint, body) {
  const { response, answer } = await postJSON(endpoint, body);
  if (!response.ok) {
    const detail = answer && answer.detail !== undefined ? (typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail)) : response.statusText;
    throw new FlowError("The Flow refused " + endpoint + " (HTTP " + response.status + "): " + detail);
  }
  if (!answer || !Array.isArray(answer.data)) {
    throw new FlowError("The Flow's answer to " + endpoint + " is not what this page expects (no data list).");
  }
  return answer;
}

// ------------------------------------------------------------------ images
// Gallery thumbnails: the ids of what is rendered go to the Flow in one POST /ui/thumbnails (docs/ui.md), which
// answers {id: data URI} for those it has. `known` (one per answer: a new search asks again, so an updated gallery
// image shows its new thumbnail) maps id -> Promise of a data URI or null; re-rendering asks only for new ids.
function requestThumbnails(ids, known) {
  const fresh = Array.from(new Set(ids.map(String))).filter((id) => !known.has(id));
  const most = Math.max(1, state.settings.thumbnails_per_request || 1);
  for (let i = 0; i < fresh.length; i += most) {
    const chunk = fresh.slice(i, i + most);
    const answer = fetchThumbnails(chunk);
    for (const id of chunk) known.set(id, answer.then((found) => shownThumbnail(found, id)));
  }
  return known;
}

async function fetchThumbnails(ids) {
  try {
    const { response, answer } = await postJSON("/ui/thumbnails", { ids: ids });
    return response.ok && answer && typeof answer === "object" ? answer : {};
  } catch (err) {
    return {}; // the cards say "no thumbnail"; an unreachable Flow is reported by the search itself
  }
}

// The formats the Flow answers (mlcl_executor/ui/routes.py THUMBNAIL_URI): anything else is not shown.
const THUMBNAIL_URI = /^data:image\/(?:png|jpeg|gif|webp|bmp);base64,/;

function shownThumbnail(found, id) {
  const uri = Object.prototype.hasOwnProperty.call(found, id) ? found[id] : null;
  return typeof uri === "string" && THUMBNAIL_URI.test(uri) ? uri : null;
}

function thumbnailNode(pending, alt) {
  const box = el("div", "no-thumb loading");
  pending.then((uri) => box.replaceWith(imageNode(uri, alt)));
  return box;
}

function imageNode(uri, alt) {
  if (!uri) return el("div", "no-thumb", "no thumbnail");
  const img = el("img");
  img.alt = alt;
  img.addEventListener("error", () => img.replaceWith(el("div", "no-thumb", "no thumbnail")), { once: true });
  img.src = uri;
  return img;
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function decodes(uri) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve(img.naturalWidth > 0);
    img.onerror = () => resolve(false);
    img.src = uri;
  });
}

// --------------------------------------------------------------- reference
function setReference(reference) {
  state.reference = reference;
  const img = $("reference-img");
  const old = document.getElementById("reference-no-preview");
  if (old) old.remove();
  if (reference.preview === false) {
    img.hidden = true;
    const box = el("div", "no-preview", reference.gallery ? "no thumbnail (the Flow uses the indexed image)"
                                                           : "no preview (the browser cannot show it; the Flow reads it)");
    box.id = "reference-no-preview";
    img.after(box);
  } else {
    // a gallery image without a thumbnail: the same reference, shown as having none
    img.onerror = reference.gallery ? () => setReference(Object.assign({}, reference, { preview: false })) : null;
    img.src = reference.image;
    img.hidden = false;
  }
  $("reference-label").textContent = reference.label;
  $("reference-id").textContent = reference.id ? "gallery id: " + reference.id : "uploaded: not from the gallery";
  $("reference-id").dataset.id = reference.id || "";
}

async function useFile(file) {
  if (!file) return;
  hideMessage();
  let uri;
  try {
    uri = await readFile(file);
  } catch (err) {
    showMessage("Could not read " + file.name + ": " + (err && err.message || err), "error");
    return;
  }
  // TIFF: browsers do not show it, the Flow reads it; it goes without the browser's check, the Flow's reason comes back
  const unseen = NO_PREVIEW.test(file.type) || NO_PREVIEW_NAME.test(file.name);
  if (unseen) uri = "data:image/tiff;base64," + uri.slice(uri.indexOf(",") + 1);
  if (!unseen && (!uri.startsWith("data:image/") || !(await decodes(uri)))) {
    showMessage(file.name + " could not be read as an image (corrupt or not an image file). Choose a PNG, JPEG, GIF, BMP, WebP or TIFF image.", "error");
    return;
  }
  setReference({ image: uri, id: null, label: file.name, preview: !unseen });
  $("caption").focus();
}

function useMatch(match, thumbnail) {
  // Sent by its gallery id, not its thumbnail: the Flow fuses the indexed image's own features (docs/serving.md).
  hideMessage();
  const reference = { image: null, id: match.id, label: match.id, gallery: true, preview: false };
  setReference(reference);
  thumbnail.then((uri) => { // (already there when its card shows it: no flicker)
    reference.image = uri;
    reference.preview = uri !== null;
    if (uri !== null && state.reference === reference) setReference(reference);
  });
  $("caption").value = "";
  $("caption").focus();
}

// ------------------------------------------------------------------- cards
function card(match, rank, score, badge, mini, thumbnails) {
  const fig = el("figure", mini ? "card mini" : "card");
  fig.tabIndex = 0;
  fig.setAttribute("role", "button");
  fig.dataset.id = String(match.id);
  fig.title = "make " + match.id + " the next reference";
  const thumbnail = thumbnails.get(String(match.id));
  fig.appendChild(thumbnailNode(thumbnail, "gallery image " + match.id));
  const cap = el("figcaption");
  if (rank !== null) cap.appendChild(el("span", "rank", "#" + rank));
  if (typeof score === "number") cap.appendChild(el("span", "score", score.toFixed(3)));
  cap.appendChild(el("span", "id", match.id));
  if (badge) cap.appendChild(el("span", "badge", badge));
  fig.appendChild(cap);
  const pick = () => useMatch(match, thumbnail);
  fig.addEventListener("click", pick);
  fig.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
  return fig;
}

function renderAnswer(step) {
  const results = $("results");
  clear(results);
  const doc = step.answer;
  const matches = doc.matches || [];
  const scores = doc.scores || [];
  const narrowed = step.facet !== null && step.facet !== undefined ? " (" + state.settings.facet + ": " + step.facet + ")" : "";
  $("results-info").textContent = "for " + step.reference.label + (step.caption ? " + \u201c" + step.caption + "\u201d" : " (image only)") + narrowed;
  const perLevel = step.levels ? doc.levels || [] : [];
  // every card of the answer (fused and per level) in one thumbnail request
  const shown = matches.concat(...perLevel.map((level) => level.matches || []));
  step.thumbnails = requestThumbnails(shown.map((m) => m.id), step.thumbnails || new Map());
  if (!matches.length) results.appendChild(el("p", "muted", "No results: the gallery is empty, or every image was left out."));
  matches.forEach((m, i) => results.appendChild(card(m, i + 1, scores[i], null, false, step.thumbnails)));
  learnFacetValues(matches);
  $("more-button").hidden = !step.more;

  const levels = $("levels");
  const rows = $("levels-rows");
  clear(rows);
  const fusedRank = new Map(matches.map((m, i) => [m.id, i + 1]));
  if (!step.levels) {
    levels.hidden = true;
    return;
  }
  levels.hidden = false;
  if (!perLevel.length) {
    rows.appendChild(el("p", "muted", "Per-level answers need both a reference image and a modification text."));
    return;
  }
  for (const level of perLevel) {
    const row = el("div", "level");
    row.dataset.level = String(level.level);
    row.appendChild(el("h3", null, LEVEL_TITLES[level.level] || String(level.level)));
    const grid = el("div", "list");
    (level.matches || []).forEach((m, i) => {
      const fused = fusedRank.get(m.id);
      grid.appendChild(card(m, i + 1, (level.scores || [])[i], fused ? "fused #" + fused : null, true, step.thumbnails));
    });
    row.appendChild(grid);
    rows.appendChild(row);
  }
}

function renderHistory() {
  const list = $("history");
  clear(list);
  state.steps.forEach((step, i) => {
    const item = el("li", i === state.current ? "current" : null);
    item.dataset.step = String(i);
    item.appendChild(imageNode(step.reference.preview === false ? null : step.reference.image, "reference of step " + (i + 1)));
    item.appendChild(el("span", null, step.reference.label + (step.caption ? " + \u201c" + step.caption + "\u201d" : "")));
    item.addEventListener("click", () => goTo(i));
    list.appendChild(item);
  });
  $("back-button").disabled = state.current <= 0;
}

function goTo(i) {
  if (i < 0 || i >= state.steps.length) return;
  hideMessage();
  state.current = i;
  const step = state.steps[i];
  setReference(step.reference);
  $("caption").value = step.caption;
  $("limit").value = String(step.limit);
  state.facet = step.facet;
  renderFacets();
  renderAnswer(step);
  renderHistory();
}

// ------------------------------------------------------------------- facet
function facetFilter(value) {
  if (!state.settings.facet || value === null || value === undefined) return null;
  const filter = {};
  filter[state.settings.facet] = { $eq: value };
  return filter;
}

function learnFacetValues(matches) {
  const tag = state.settings.facet;
  if (!tag || (state.settings.facet_values || []).length) return;
  let added = false;
  for (const m of matches) {
    const value = m && m.tags ? m.tags[tag] : undefined;
    if (["string", "number", "boolean"].includes(typeof value) && !state.facetValues.includes(value)) {
      state.facetValues.push(value);
      added = true;
    }
  }
  if (added) renderFacets();
}

function renderFacets() {
  const tag = state.settings.facet;
  $("facet").hidden = !tag;
  if (!tag) return;
  $("facet-label").textContent = "Only " + tag + ":";
  const box = $("facet-values");
  clear(box);
  for (const value of [null, ...state.facetValues]) {
    const chip = el("button", state.facet === value ? "active" : null, value === null ? "all" : String(value));
    chip.type = "button";
    chip.dataset.value = value === null ? "" : JSON.stringify(value);
    chip.addEventListener("click", () => {
      state.facet = value;
      renderFacets();
      if (state.reference) search();
    });
    box.appendChild(chip);
  }
}

// ------------------------------------------------------------------ search
function currentLimit() {
  const max = state.settings.max_limit;
  let limit = parseInt($("limit").value, 10);
  if (!Number.isFinite(limit) || limit < 1) limit = state.settings.default_limit;
  limit = Math.min(limit, max);
  $("limit").value = String(limit);
  return limit;
}

async function search() {
  hideMessage();
  const reference = state.reference;
  if (!reference) {
    showMessage("Choose a reference image first: upload one, drop one, or pick a gallery example.", "error");
    return;
  }
  const caption = $("caption").value.trim();
  const limit = currentLimit();
  const levels = $("levels-toggle").checked;
  const query = reference.gallery ? {} : { image: reference.image }; // a gallery image goes by its id (reference_id)
  if (caption) query.text = caption;
  if (reference.id) query.reference_id = reference.id;
  const button = $("search-button");
  button.disabled = true;
  $("results").setAttribute("aria-busy", "true");
  try {
    const parameters = { limit: limit, levels: levels };
    const filter = facetFilter(state.facet);
    if (filter) parameters.filter = filter;
    const answer = await post("/search", { data: [query], parameters: parameters });
    const doc = answer.data[0];
    if (!doc) throw new FlowError("The Flow answered /search without a document.");
    if (doc.error) throw new FlowError("The Flow could not use this query: " + doc.error);
    const step = { reference: reference, caption: caption, limit: limit, levels: levels, facet: state.facet, answer: doc,
                   query: query, more: (doc.matches || []).length === limit };
    state.steps = state.steps.slice(0, state.current + 1); // a new query after stepping back starts a new branch
    state.steps.push(step);
    state.current = state.steps.length - 1;
    renderAnswer(step);
    renderHistory();
  } catch (err) {
    showMessage(err instanceof FlowError ? err.message : "Unexpected error: " + (err && err.message || err), "error");
  } finally {
    button.disabled = false;
    $("results").removeAttribute("aria-busy");
    document.body.dataset.searches = String(Number(document.body.dataset.searches || 0) + 1); // for tests and scripts
  }
}

// The next page of the current step's results (the same query, from `offset` on), added to its grid.
async function more() {
  const step = state.steps[state.current];
  if (!step || !step.more) return;
  hideMessage();
  const button = $("more-button");
  button.disabled = true;
  try {
    const offset = (step.answer.matches || []).length;
    const parameters = { limit: step.limit, offset: offset };
    const filter = facetFilter(step.facet);
    if (filter) parameters.filter = filter;
    const answer = await post("/search", { data: [step.query], parameters: parameters });
    const doc = answer.data[0];
    if (!doc) throw new FlowError("The Flow answered /search without a document.");
    if (doc.error) throw new FlowError("The Flow could not use this query: " + doc.error);
    step.answer.matches = (step.answer.matches || []).concat(doc.matches || []);
    step.answer.scores = (step.answer.scores || []).concat(doc.scores || []);
    step.more = (doc.matches || []).length === step.limit;
    if (state.steps[state.current] === step) renderAnswer(step);
  } catch (err) {
    showMessage(err instanceof FlowError ? err.message : "Unexpected error: " + (err && err.message || err), "error");
  } finally {
    button.disabled = false;
    document.body.dataset.searches = String(Number(document.body.dataset.searches || 0) + 1); // for tests and scripts
  }
}

// ------------------------------------------------------------------ set-up
async function loadSettings() {
  try {
    const response = await fetch("/ui/config.json");
    if (response.ok) Object.assign(state.settings, await response.json());
  } catch (err) {
    // keep the defaults: the status line reports an unreachable Flow
  }
  document.title = state.settings.title;
  $("title").textContent = state.settings.title;
  $("limit").max = String(state.settings.max_limit);
  $("limit").value = String(state.settings.default_limit);
  $("levels-toggle").checked = !!state.settings.levels;
  state.facetValues = (state.settings.facet_values || []).slice();
  renderFacets();
  const chips = $("suggestions");
  clear(chips);
  for (const text of state.settings.captions || []) {
    const chip = el("button", null, text);
    chip.type = "button";
    chip.addEventListener("click", () => {
      $("caption").value = text;
      if (state.reference) search();
    });
    chips.appendChild(chip);
  }
}

async function loadStatus() {
  try {
    const answer = await post("/count", { data: [] });
    const count = answer.data[0] ? answer.data[0].count : 0;
    setStatus(count + " gallery images", true);
    if (!count) showMessage("The gallery is empty: index images first (`mlcl index FOLDER`, or POST /index).", "error");
    return count;
  } catch (err) {
    setStatus("Flow unreachable", false);
    showMessage(err.message, "error");
    return 0;
  }
}

async function loadExamples() {
  const strip = $("examples");
  clear(strip);
  const n = state.settings.examples;
  if (!n) {
    strip.appendChild(el("p", "muted small", "(no examples configured)"));
    return;
  }
  try {
    const answer = await post("/search", {
      data: [{ text: state.settings.examples_text }],
      parameters: { limit: Math.min(n, state.settings.max_limit) },
    });
    const doc = answer.data[0] || {};
    if (doc.error) throw new FlowError(doc.error);
    const thumbnails = requestThumbnails((doc.matches || []).map((m) => m.id), new Map());
    for (const m of doc.matches || []) strip.appendChild(card(m, null, null, null, false, thumbnails));
    learnFacetValues(doc.matches || []);
    if (!(doc.matches || []).length) strip.appendChild(el("p", "muted small", "(the gallery is empty)"));
  } catch (err) {
    strip.appendChild(el("p", "muted small", "Gallery examples unavailable: " + err.message));
  }
}

function wireUp() {
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  $("file-input").addEventListener("change", (e) => { useFile(e.target.files[0]); e.target.value = ""; });
  $("back-button").addEventListener("click", () => goTo(state.current - 1));
  $("more-button").addEventListener("click", () => more());
  $("limit").addEventListener("change", () => { if (state.current >= 0 && state.reference) search(); });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragover"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragover"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragover");
    const files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length) useFile(files[0]);
    else showMessage("Drop an image file (from your computer) here.", "error");
  });
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter") $("file-input").click(); });
  // A file dropped next to the drop zone must not make the browser leave the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

async function start() {
  wireUp();
  await loadSettings();
  const count = await loadStatus();
  if (count) await loadExamples();
  document.body.dataset.ready = "true";
}

start();
