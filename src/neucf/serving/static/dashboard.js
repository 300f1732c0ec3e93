// The dashboard: figures drawn by the server from its feedback store (GET /dashboard/data).
"use strict";

const $ = (id) => document.getElementById(id);
let key = sessionStorage.getItem("neucf-key");

async function api(path) {
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const response = await fetch(path, { headers });
  if (response.status === 401) {
    $("key-form").hidden = false;
    throw new Error("this server needs an API key");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(typeof body.detail === "string" ? body.detail : `${path}: HTTP ${response.status}`);
  }
  return response.json();
}

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

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  key = $("api-key").value;
  sessionStorage.setItem("neucf-key", key);
  $("key-form").hidden = true;
  load();
});
$("days").addEventListener("change", load);
load();
