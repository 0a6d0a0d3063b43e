import { api, el, fail, formValues, status, when } from "./api.js";
import { lineDiff } from "./diff.js";

const $ = (id) => document.getElementById(id);
const FIELDS = ["enhancer_model", "target_model", "job_type", "use_case", "content_mode", "token_limit", "system_prompt"];
let families = [];
let open = null; // the family shown in the detail panel
let editing = null; // null: creating; a family: writing a new version of it

function served(f) {
  return f.versions.find((v) => v.version === f.served_version) || f.versions[f.versions.length - 1];
}

function labelText(labels) {
  return Object.entries(labels).map(([l, v]) => `${l} → v${v}`).join(", ") || "—";
}

async function load(announce = true) {
  const values = formValues($("filters"));
  const label = values.label;
  delete values.label;
  if ($("f-inactive").checked) values.include_inactive = "true";
  delete values.include_inactive_on;
  const query = new URLSearchParams(values).toString();
  families = await api("GET", `/templates${query ? `?${query}` : ""}`);
  if (label) families = families.filter((f) => label in f.labels);
  const body = $("template-table").tBodies[0];
  body.replaceChildren();
  for (const f of families) {
    const v = served(f) || {};
    body.append(el("tr", {},
      el("th", { scope: "row" }, el("button", { type: "button", class: "link", text: f.template_name,
        "aria-label": `Open template ${f.template_name}`, onclick: () => show(f.template_name) })),
      el("td", { text: f.served_version ? `v${f.served_version}` : "none active" }),
      el("td", { text: labelText(f.labels) }),
      el("td", { text: v.target_model }), el("td", { text: v.enhancer_model }), el("td", { text: v.job_type }),
      el("td", { text: v.use_case }), el("td", { text: v.content_mode })));
  }
  if (announce) status(`${families.length} template(s)`);
}

async function show(name) {
  open = await api("GET", `/templates/${encodeURIComponent(name)}`);
  $("detail").hidden = false;
  $("detail-h").textContent = open.template_name;
  $("d-try").href = `/ui/playground?template=${encodeURIComponent(open.template_name)}`;
  const body = $("version-table").tBodies[0];
  body.replaceChildren();
  const options = [];
  for (const v of [...open.versions].reverse()) {
    body.append(el("tr", {}, el("th", { scope: "row", text: `v${v.version}` }), el("td", { text: v.id }),
      el("td", { text: v.is_active ? "yes" : "no" }), el("td", { text: v.labels.join(", ") || "—" }),
      el("td", { text: v.token_limit }), el("td", { text: when(v.created_at) })));
    options.push(v.version);
  }
  for (const id of ["l-version", "diff-a", "diff-b"]) {
    $(id).replaceChildren(...options.map((n) => el("option", { value: n, text: `v${n}` })));
  }
  if (options.length > 1) $("diff-a").value = options[1];
  $("diff").replaceChildren();
  $("detail").scrollIntoView({ block: "start" });
}

function openEditor(family) {
  editing = family;
  const form = $("template-form");
  form.reset();
  $("editor").hidden = false;
  $("editor-h").textContent = family ? `Edit ${family.template_name} (saves a new version)` : "New template";
  form.elements.template_name.readOnly = Boolean(family);
  if (family) {
    const latest = family.versions[family.versions.length - 1];
    form.elements.template_name.value = family.template_name;
    for (const k of FIELDS) form.elements[k].value = latest[k];
  }
  form.elements[family ? "system_prompt" : "template_name"].focus();
}

$("template-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = event.target.elements;
  const body = {};
  for (const k of FIELDS) body[k] = k === "token_limit" ? parseInt(f[k].value, 10) : f[k].value;
  body.labels = f.labels.value.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    let out;
    let done;
    if (editing) {
      out = await api("PUT", `/templates/${encodeURIComponent(editing.template_name)}`, body);
      done = `Saved ${out.template_name} v${out.versions[out.versions.length - 1].version}`;
    } else {
      out = await api("POST", "/templates", { template_name: f.template_name.value, ...body });
      done = `Created ${out.template_name}`;
    }
    $("editor").hidden = true;
    await load(false);
    await show(out.template_name);
    status(done);
  } catch (err) {
    fail(err);
  }
});

$("label-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = event.target.elements;
  try {
    const out = await api("POST", `/templates/${encodeURIComponent(open.template_name)}/labels`,
      { label: f.label.value, version: parseInt(f.version.value, 10) });
    await load(false);
    await show(out.template_name);
    status(`${f.label.value} now points at v${out.labels[f.label.value]}; ${out.template_name} serves v${out.served_version}`);
  } catch (err) {
    fail(err);
  }
});

$("diff-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const a = open.versions.find((v) => v.version === parseInt($("diff-a").value, 10));
  const b = open.versions.find((v) => v.version === parseInt($("diff-b").value, 10));
  const text = (v) => [...FIELDS.filter((k) => k !== "system_prompt").map((k) => `${k}: ${v[k]}`), "", ...v.system_prompt.split("\n")].join("\n");
  const table = el("table", { class: "diff-table" },
    el("caption", { text: `v${a.version} ↔ v${b.version}` }),
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: `v${a.version}` }), el("th", { scope: "col", text: `v${b.version}` }))),
    el("tbody", {}, lineDiff(text(a), text(b)).map(([l, r, kind]) => el("tr", { class: kind },
      el("td", { class: kind === "same" ? "" : "old", text: l }), el("td", { class: kind === "same" ? "" : "new", text: r })))));
  $("diff").replaceChildren(table);
});

$("d-edit").addEventListener("click", () => openEditor(open));
$("new-template").addEventListener("click", () => openEditor(null));
$("t-cancel").addEventListener("click", () => { $("editor").hidden = true; });
$("d-deactivate").addEventListener("click", async () => {
  if (!confirm(`Deactivate every version of ${open.template_name}?`)) return;
  try {
    await api("DELETE", `/templates/${encodeURIComponent(open.template_name)}`);
    $("detail").hidden = true;
    await load(false);
    status(`Deactivated ${open.template_name}`);
  } catch (err) {
    fail(err);
  }
});

$("filters").addEventListener("submit", (event) => { event.preventDefault(); load().catch(fail); });

$("import-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("import-file").files[0];
  const yaml = file ? await file.text() : $("import-text").value;
  try {
    const out = await api("POST", "/templates:import", { yaml });
    event.target.reset();
    await load(false);
    status(`Imported: ${out.created} created, ${out.new_versions} new versions, ${out.unchanged} unchanged`);
  } catch (err) {
    fail(err);
  }
});

load().catch(fail);
