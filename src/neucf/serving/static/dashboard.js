// The dashboard: figures drawn by the server from its feedback store (GET /dashboard/data).
"use strict";

// (api, $ and onKey come from api.js)

const when = (seconds) => (seconds == null ? "" : new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " "));

async function load() {
  try {
    const model = await api("model");
    $("live-line").textContent = `live run: ${model.run ?? "(none)"}, ${model.model}, trained ${model.trained_at ?? "?"}`;
    const data = await api(`dashboard/data?days=${$("days").value}`);
    for (const [name, svg] of Object.entries(data.figures)) $(name).innerHTML = svg;
    const rate = data.lists ? `${((100 * data.hits) / data.lists).toFixed(1)}%` : "none yet";
    $("summary").textContent = `${data.events} events stored, ${data.lists} lists served, online hit rate ${rate}`;
    const rows = $("run-table").querySelector("tbody");
    rows.replaceChildren();
    for (const run of data.runs.slice().reverse()) {
      const tr = document.createElement("tr");
      for (const text of [run.run, run.status, when(run.trained_at), when(run.live_since), run.judged ?? ""]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      rows.append(tr);
    }
    document.body.dataset.loaded = "true";
  } catch (error) {
    $("live-line").textContent = error.message;
  }
}

onKey(load);
$("days").addEventListener("change", load);
load();
