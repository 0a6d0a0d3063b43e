import { api, el, fail, status, when } from "./api.js";

const $ = (id) => document.getElementById(id);

async function load(announce = true) {
  const workers = await api("GET", "/workers");
  const body = $("worker-table").tBodies[0];
  body.replaceChildren();
  for (const w of workers) {
    const remove = el("button", { type: "button", class: "danger", text: "Remove", "aria-label": `Remove worker ${w.url}`,
      onclick: async () => {
        if (!confirm(`Remove ${w.url} from the registry?`)) return;
        try { await api("DELETE", `/workers/${encodeURIComponent(w.id)}`); await load(false); status(`Removed ${w.url}`); } catch (err) { fail(err); }
      } });
    body.append(el("tr", {},
      el("th", { scope: "row" }, el("span", { text: w.url }), el("br"), el("small", { class: "muted", text: w.id })),
      el("td", { text: w.worker_type }),
      el("td", { text: w.models.join(", ") || "—" }),
      el("td", {}, el("span", { class: `pill ${w.healthy ? "ok" : "bad"}`, text: w.healthy ? "healthy" : "unhealthy" }),
        w.last_error ? el("small", { class: "muted", text: ` ${w.last_error}` }) : null),
      el("td", { text: w.in_flight }),
      el("td", { text: w.circuit }),
      el("td", { text: when(w.last_heartbeat) }),
      el("td", { text: w.source }),
      el("td", {}, remove)));
  }
  if (announce) status(`${workers.length} worker(s), ${workers.filter((w) => w.healthy).length} healthy`);
}

$("add-worker").addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = event.target.elements;
  try {
    const w = await api("POST", "/workers", { url: f.url.value, worker_type: f.worker_type.value,
      models: f.models.value.split(",").map((s) => s.trim()).filter(Boolean) });
    event.target.reset();
    await load(false);
    status(`Added ${w.url} (${w.healthy ? "healthy" : "not healthy yet"})`);
  } catch (err) {
    fail(err);
  }
});
$("refresh").addEventListener("click", () => load().catch(fail));
load().catch(fail);
