// What both pages (the main page and the dashboard) share: calls to the API with the key this
// tab was given, and the form that asks for it. Plain JavaScript, loaded before each page's own.
"use strict";

const $ = (id) => document.getElementById(id);
let apiKey = sessionStorage.getItem("neucf-key");

async function api(path, body, method) {
  const headers = { "Content-Type": "application/json" };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const options = { headers, method: method || (body === undefined ? "GET" : "POST") };
  if (body !== undefined) options.body = JSON.stringify(body);
  const response = await fetch(path, options);
  if (response.status === 401) {
    if (method === "DELETE") throw new Error("only this server's administrator can erase users here");
    $("key-form").hidden = false;
    throw new Error("this server needs an API key");
  }
  if (response.status === 204) return {};
  const data = await response.json().catch(() => ({ detail: `${path}: HTTP ${response.status}` }));
  if (!response.ok) throw new Error(typeof data.detail === "string" ? data.detail : data.detail.map((d) => d.msg).join("; "));
  return data;
}

// the key form: keep the key for this tab, then try again
function onKey(retry) {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    apiKey = $("api-key").value;
    sessionStorage.setItem("neucf-key", apiKey);
    $("key-form").hidden = true;
    retry();
  });
}
