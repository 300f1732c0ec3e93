// The page of `neucf serve`: search items, rate them, and see a new user's recommendations
// (fold-in), or a known user's; the newest items (known by attributes), ranked for you. Plain JavaScript, no build step, nothing from a CDN.
// On a server that keeps feedback (--store) the visitor's stars are stored under a random id
// kept in this browser, and "Forget me" erases them.
"use strict";

// (api, $ and onKey come from api.js)
const state = { ratings: new Map(), titles: new Map(), scale: [1, 5], implicit: false, newest: [], visitor: null };

function label(item, title) {
  return title ? title : `item ${item}`;
}

function likeButton(item, title) {
  // a model of interactions without ratings: an item is liked (picked) or not
  const box = document.createElement("span");
  box.className = "stars";
  const button = Object.assign(document.createElement("button"), { type: "button", textContent: "♥ like", title: "like" });
  button.className = "like";
  if (state.ratings.has(item)) button.classList.add("on");
  button.addEventListener("click", () => rate(item, title, null));
  box.append(button);
  return box;
}

function stars(item, title) {
  // one button per whole step of the scale (a scale of more than 10 steps gets a number box)
  if (state.implicit) return likeButton(item, title);
  const [low, high] = state.scale;
  const box = document.createElement("span");
  box.className = "stars";
  const steps = [];
  for (let v = Math.ceil(low); v <= Math.floor(high); v += 1) steps.push(v);
  if (steps.length === 0 || steps.length > 10) {
    const input = Object.assign(document.createElement("input"), { type: "number", min: low, max: high, step: "any", size: 4 });
    input.addEventListener("change", () => rate(item, title, Number(input.value)));
    box.append(input);
    return box;
  }
  const current = state.ratings.get(item)?.rating;
  for (const v of steps) {
    const button = Object.assign(document.createElement("button"), { type: "button", textContent: "★", title: `${v}` });
    button.dataset.value = v;
    if (current !== undefined && v <= current) button.classList.add("on");
    button.addEventListener("click", () => rate(item, title, v));
    box.append(button);
  }
  return box;
}

function row(text, extra) {
  const li = document.createElement("li");
  const name = document.createElement("span");
  name.textContent = text;
  li.append(name, extra);
  return li;
}

function fill(list, rows, emptyText) {
  list.replaceChildren(...(rows.length ? rows : [Object.assign(document.createElement("li"), { className: "empty", textContent: emptyText })]));
}

async function search() {
  const q = $("search").value.trim();
  try {
    const data = await api(`items?q=${encodeURIComponent(q)}&limit=15`);
    fill($("results"), data.items.map((it) => row(label(it.item, it.title), stars(it.item, it.title))), "no match");
  } catch (error) {
    $("message").textContent = error.message;
  }
}

function showRated() {
  const rows = [...state.ratings.entries()].map(([item, r]) => row(label(item, r.title), stars(item, r.title)));
  fill($("rated"), rows, "nothing rated yet");
}

function showRecommendations(title, items) {
  $("recommendations-title").textContent = title;
  const score = (p) => Object.assign(document.createElement("span"), { className: "score", textContent: p.toFixed(2) });
  fill($("recommendations"), items.map((it) => row(label(it.item, it.title), score(it.prediction))), "nothing to recommend");
}

function visitorId() {
  // random, so never a trained user's id; kept in this browser until "Forget me"
  let id = localStorage.getItem("neucf-visitor");
  if (!id) {
    id = `visitor-${crypto.randomUUID()}`;
    localStorage.setItem("neucf-visitor", id);
  }
  return id;
}

async function showPopular() {
  const data = await api("items?limit=10");
  $("recommendations-title").textContent = "Popular (rate a few items for your own list)";
  fill($("recommendations"), data.items.map((it) => row(label(it.item, it.title), document.createElement("span"))), "nothing yet");
}

async function showVisitorList() {
  const data = await api(`users/${encodeURIComponent(state.visitor)}/recommendations?k=10`);
  const what = state.implicit ? "like" : "rating";
  const n = state.ratings.size;
  showRecommendations(`Recommended for you (from ${n} ${what}${n > 1 ? "s" : ""})`, data.items);
}

async function rateStored(item, value) {
  // stored first (the answer comes once the database committed it), then the list follows it
  const event = value === null ? { user: state.visitor, item } : { user: state.visitor, item, rating: value };
  try {
    await api("feedback", { events: [event] });
    $("message").textContent = "";
    await showVisitorList();
  } catch (error) {
    $("message").textContent = error.message;
  }
}

async function loadVisitor() {
  state.visitor = visitorId();
  $("forget-me").hidden = false;
  try {
    const data = await api(`users/${encodeURIComponent(state.visitor)}/feedback`);
    for (const e of data.events) state.ratings.set(e.item, { rating: e.rating, title: null });
    showRated();
    await showVisitorList();
  } catch (error) {
    await showPopular();  // nothing stored yet: the popular items, until the first rating
  }
}

async function forgetMe() {
  try {
    await api(`users/${encodeURIComponent(state.visitor)}`, undefined, "DELETE");
    localStorage.removeItem("neucf-visitor");
    state.ratings.clear();
    state.visitor = visitorId();
    showRated();
    search();
    $("message").textContent = "Forgotten: your ratings were erased from this server.";
    await showPopular();
  } catch (error) {
    $("message").textContent = error.message;
  }
}

async function rate(item, title, value) {
  state.ratings.set(item, { rating: value, title });
  showRated();
  search();
  if (state.visitor) return rateStored(item, value);
  const ratings = [...state.ratings.entries()].map(([i, r]) => (r.rating === null ? { item: i } : { item: i, rating: r.rating }));
  const what = state.implicit ? "like" : "rating";
  try {
    const data = await api("recommendations", { ratings, k: 10 });
    $("message").textContent = data.ignored && data.ignored.length ? `not known to the model, left out: ${data.ignored.join(", ")}` : "";
    showRecommendations(`Recommended for you (from ${ratings.length} ${what}${ratings.length > 1 ? "s" : ""})`, data.items);
  } catch (error) {
    $("message").textContent = error.message;
  }
}

async function showNewest() {
  // items nobody has rated yet, known to the model by their attributes
  try {
    const data = await api("items?newest=true&limit=10");
    state.newest = data.items.map((it) => it.item);
    $("newest-section").hidden = data.items.length === 0;
    fill($("newest"), data.items.map((it) => row(label(it.item, it.title), document.createElement("span"))), "none");
  } catch (error) {
    $("message").textContent = error.message;
  }
}

async function rankNewest() {
  const ratings = [...state.ratings.entries()].map(([i, r]) => (r.rating === null ? { item: i } : { item: i, rating: r.rating }));
  try {
    const data = await api("recommendations", { ratings, candidates: state.newest, k: 10 });
    $("message").textContent = "";
    showRecommendations(`The newest items, ranked for you (from ${ratings.length} rated)`, data.items);
  } catch (error) {
    $("message").textContent = error.message;
  }
}

async function knownUser(event) {
  event.preventDefault();
  const user = $("user-id").value.trim();
  if (!user) return;
  try {
    const data = await api(`users/${encodeURIComponent(user)}/recommendations?k=10`);
    $("message").textContent = "";
    showRecommendations(`Recommended for user ${user}`, data.items);
  } catch (error) {
    $("message").textContent = error.message;
  }
}

async function start() {
  try {
    const model = await api("model");
    state.implicit = model.implicit;
    if (model.scale) state.scale = model.scale;
    const data = model.implicit ? "interactions (like what you would pick)" : `ratings ${model.scale[0]}–${model.scale[1]}`;
    $("model-line").textContent = `${model.model} (${model.task}): ${model.users.toLocaleString()} users, ${model.items.toLocaleString()} items, ${data}`;
    $("rate-title").textContent = model.implicit ? "Like a few items" : "Rate a few items";
    $("rated-title").textContent = model.implicit ? "Your likes" : "Your ratings";
    $("key-form").hidden = true;
    search();
    showNewest();
    if (model.feedback) loadVisitor();
  } catch (error) {
    $("model-line").textContent = error.message;
  }
}

onKey(start);
let timer;
$("search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 200); });
$("user-form").addEventListener("submit", knownUser);
$("rank-newest").addEventListener("click", rankNewest);
$("forget-me").addEventListener("click", forgetMe);
start();
