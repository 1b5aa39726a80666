// The API reference of the Flow that served it: rendered from its own /openapi.json, nothing loaded from elsewhere.
"use strict";

// $ and el: dom.js

function refName(schema) {
  return schema && typeof schema.$ref === "string" ? schema.$ref.split("/").pop() : null;
}

function resolve(spec, schema) {
  const name = refName(schema);
  return name ? (spec.components && spec.components.schemas && spec.components.schemas[name]) || {} : schema || {};
}

function typeOf(spec, schema) {
  if (!schema) return "any";
  const name = refName(schema);
  if (name) return name;
  for (const key of ["anyOf", "oneOf", "allOf"]) {
    if (Array.isArray(schema[key])) return schema[key].map((s) => typeOf(spec, s)).join(" | ");
  }
  if (schema.type === "array") return "list of " + typeOf(spec, schema.items);
  return schema.type || "object";
}

// The document schema of a body's `data` (a list of documents, or one).
function documentSchema(spec, body) {
  const data = resolve(spec, body).properties ? resolve(spec, body).properties.data : null;
  if (!data) return null;
  const options = data.anyOf || data.oneOf || [data];
  for (const option of options) {
    if (option.type === "array" && option.items) return option.items;
  }
  return options[0];
}

function fieldsTable(spec, schema) {
  const resolved = resolve(spec, schema);
  const table = el("table", "fields");
  const head = el("tr");
  ["field", "type", "description"].forEach((h) => head.appendChild(el("th", null, h)));
  table.appendChild(head);
  for (const [name, field] of Object.entries(resolved.properties || {})) {
    const row = el("tr");
    row.appendChild(el("td", "name", name));
    row.appendChild(el("td", "type", typeOf(spec, field)));
    row.appendChild(el("td", null, field.description || ""));
    table.appendChild(row);
  }
  return table;
}

function render(spec) {
  document.title = (spec.info && spec.info.title ? spec.info.title : "mlcl") + " API";
  $("title").textContent = document.title;
  $("description").textContent = spec.info && spec.info.description ? spec.info.description : "";
  const list = $("endpoints");
  const paths = Object.keys(spec.paths || {}).sort();
  let count = 0;
  for (const path of paths) {
    const post = spec.paths[path].post;
    if (!post) continue;
    count += 1;
    const block = el("article", "endpoint");
    block.id = "endpoint-" + path.replace(/[^a-z0-9]/gi, "_");
    block.appendChild(el("h2", null, "POST " + path));
    const body = post.requestBody && post.requestBody.content && post.requestBody.content["application/json"];
    const response = post.responses && post.responses["200"] && post.responses["200"].content
      && post.responses["200"].content["application/json"];
    const input = body ? documentSchema(spec, body.schema) : null;
    const output = response ? documentSchema(spec, response.schema) : null;
    if (input) {
      block.appendChild(el("h3", null, "request documents: " + typeOf(spec, input)));
      block.appendChild(fieldsTable(spec, input));
    }
    if (output) {
      block.appendChild(el("h3", null, "answer documents: " + typeOf(spec, output)));
      block.appendChild(fieldsTable(spec, output));
    }
    const example = "curl -s -X POST " + window.location.origin + path
      + " -H 'Content-Type: application/json' -d '{\"data\": [], \"parameters\": {}}'";
    block.appendChild(el("pre", "example", example));
    list.appendChild(block);
  }
  $("status").textContent = count + " endpoints";
  $("status").className = "status ok";
  document.body.dataset.ready = "true";
}

async function start() {
  try {
    const response = await fetch("/openapi.json");
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
  } catch (err) {
    $("status").textContent = "unavailable";
    $("status").className = "status bad";
    const box = $("message");
    box.textContent = "Cannot read /openapi.json from this Flow: " + (err && err.message || err);
    box.className = "message error";
    box.hidden = false;
    document.body.dataset.ready = "true";
  }
}

start();
