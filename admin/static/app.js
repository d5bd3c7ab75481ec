// The dashboard: every device as a card with its six LEDs, kept live from /api/events.
// The listing is fetched page by page (the first page is painted at once), then events patch
// it. Only the cards in view exist in the DOM (virtual scrolling), so 10,000 devices stay fast.

import { ApiError, del, enc, get, post, put, api, setToken, setUnauthorizedHandler } from "./api.js";
import { EventStream } from "./events.js";
import { createLedRow, setLedRow } from "./leds.js";

const CARD_WIDTH = 250;
const CARD_HEIGHT = 150;
const GAP = 10;
const PAGE = 1000;

const $ = (id) => document.getElementById(id);
const devices = new Map(); // device_id -> device JSON
let order = []; // every device_id, sorted
let shown = []; // the ids passing the filter
const selected = new Set();
const cards = new Map(); // device_id -> {el, parts} for the cards in the DOM
let readOnly = false;
let stream = null;
let paintQueued = false;
let paintLayout = true;

function log(text, isError = false) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  if (isError) item.className = "error";
  $("log").prepend(item);
  while ($("log").children.length > 50) $("log").lastChild.remove();
}

function failed(what, error) {
  log(`${what}: ${error instanceof ApiError ? error.detail : error}`, true);
}

// Sign-in.

function askForToken(message = "") {
  $("token-error").textContent = message;
  if (!$("token-dialog").open) $("token-dialog").showModal();
  $("token-input").focus();
}

setUnauthorizedHandler(() => askForToken("the token was refused; enter another"));

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken($("token-input").value.trim());
  $("token-dialog").close();
  start();
});

// The listing.

function insert(device) {
  if (!devices.has(device.device_id)) {
    const index = lowerBound(order, device.device_id);
    order.splice(index, 0, device.device_id);
  }
  devices.set(device.device_id, device);
}

function lowerBound(list, value) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

async function loadDevices() {
  devices.clear();
  order = [];
  let after = null;
  let eventId = null;
  for (;;) {
    const query = `limit=${PAGE}` + (after ? `&after=${enc(after)}` : "");
    const { data } = await get(`/api/devices?${query}`);
    if (eventId === null) eventId = data.event_id;
    for (const device of data.devices) insert(device);
    refilter();
    if (!data.next) break;
    after = data.next;
  }
  return eventId;
}

// Filtering and selection.

function filters() {
  const connected = $("filter-connected").value;
  const mode = $("filter-mode").value;
  return {
    text: $("search").value.trim().toLowerCase(),
    connected: connected === "" ? null : connected === "true",
    tag: $("filter-tag").value.trim(),
    mode: mode === "" ? null : Number(mode),
  };
}

function matches(device, f) {
  if (f.connected !== null && device.connected !== f.connected) return false;
  if (f.tag && !device.tags.includes(f.tag)) return false;
  if (f.mode !== null && device.mode !== f.mode) return false;
  if (f.text) {
    return device.device_id.toLowerCase().includes(f.text) || device.tags.some((t) => t.toLowerCase().includes(f.text));
  }
  return true;
}

function refilter() {
  const f = filters();
  shown = order.filter((id) => matches(devices.get(id), f));
  schedulePaint(true);
}

for (const id of ["search", "filter-connected", "filter-tag", "filter-mode"]) {
  $(id).addEventListener("input", refilter);
}

$("select-all").addEventListener("change", (event) => {
  for (const id of shown) {
    if (event.target.checked) selected.add(id);
    else selected.delete(id);
  }
  schedulePaint(true);
});

// Painting: only the rows in view.

function schedulePaint(layout = false) {
  if (layout) paintLayout = true;
  if (paintQueued) return;
  paintQueued = true;
  requestAnimationFrame(paint);
}

function columns() {
  return Math.max(1, Math.floor(($("grid").clientWidth + GAP) / (CARD_WIDTH + GAP)));
}

function paint() {
  paintQueued = false;
  const grid = $("grid");
  const cols = columns();
  const rows = Math.ceil(shown.length / cols);
  if (paintLayout) {
    $("spacer").style.height = `${rows * (CARD_HEIGHT + GAP)}px`;
    paintLayout = false;
  }
  const first = Math.max(0, Math.floor(grid.scrollTop / (CARD_HEIGHT + GAP)) - 1);
  const last = Math.min(rows, Math.ceil((grid.scrollTop + grid.clientHeight) / (CARD_HEIGHT + GAP)) + 1);
  const wanted = new Set();
  for (let index = first * cols; index < Math.min(shown.length, last * cols); index += 1) {
    const id = shown[index];
    wanted.add(id);
    let card = cards.get(id);
    if (!card) {
      card = makeCard(id);
      cards.set(id, card);
      grid.appendChild(card.el);
    }
    card.el.style.transform = `translate(${(index % cols) * (CARD_WIDTH + GAP)}px, ${Math.floor(index / cols) * (CARD_HEIGHT + GAP)}px)`;
    fillCard(card, devices.get(id));
  }
  for (const [id, card] of cards) {
    if (!wanted.has(id)) {
      card.el.remove();
      cards.delete(id);
    }
  }
  const connected = order.reduce((n, id) => n + (devices.get(id).connected ? 1 : 0), 0);
  $("count").textContent = `${shown.length} shown of ${order.length} devices, ${connected} connected`;
  $("selection").textContent = `${selected.size} selected`;
}

$("grid").addEventListener("scroll", () => schedulePaint());
window.addEventListener("resize", () => schedulePaint(true));

function makeCard(id) {
  const el = document.createElement("div");
  el.className = "card";
  el.dataset.deviceId = id;
  el.setAttribute("role", "listitem");
  el.style.width = `${CARD_WIDTH}px`;
  const top = document.createElement("div");
  top.className = "top";
  const check = document.createElement("input");
  check.type = "checkbox";
  check.setAttribute("aria-label", `select ${id}`);
  check.addEventListener("change", () => {
    if (check.checked) selected.add(id);
    else selected.delete(id);
    schedulePaint();
  });
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = id;
  const status = document.createElement("span");
  status.className = "status";
  status.dataset.field = "status";
  top.append(check, name, status);
  const ledRow = createLedRow();
  const info = document.createElement("div");
  info.className = "meta";
  const mode = document.createElement("span");
  mode.dataset.field = "mode";
  const playing = document.createElement("span");
  playing.dataset.field = "playing";
  info.append(mode, " · ", playing);
  const seen = document.createElement("div");
  seen.className = "meta";
  seen.dataset.field = "last_seen";
  const row = document.createElement("div");
  row.className = "row";
  const play = button("Play", "play", () => act([id], "play"));
  const stop = button("Stop", "stop", () => act([id], "stop"));
  const tags = document.createElement("span");
  tags.className = "tags";
  tags.dataset.field = "tags";
  row.append(play, stop, tags);
  el.append(top, ledRow.el, info, seen, row);
  return { el, parts: { check, status, leds: ledRow.leds, mode, playing, seen, tags, play, stop }, version: null };
}

function button(text, action, onClick) {
  const b = document.createElement("button");
  b.textContent = text;
  b.dataset.action = action;
  b.dataset.acts = "";
  b.disabled = readOnly;
  b.addEventListener("click", onClick);
  return b;
}

function fillCard(card, device) {
  const p = card.parts;
  p.check.checked = selected.has(device.device_id);
  card.el.classList.toggle("selected", p.check.checked);
  if (card.version === device) return;
  card.version = device;
  card.el.classList.toggle("offline", !device.connected);
  p.status.textContent = device.status;
  p.status.className = `status ${device.status}`;
  setLedRow(p.leds, device.leds);
  p.mode.textContent = device.desired_mode === null ? `mode ${device.mode}` : `mode ${device.mode} → ${device.desired_mode}`;
  p.playing.textContent = device.playing ? `▶ ${device.playing.sound} since ${time(device.playing.since)}` : "not playing";
  p.seen.textContent = device.connected
    ? `connected since ${time(device.connected_since)}${device.replica ? ` on ${device.replica}` : ""}`
    : `last seen ${time(device.last_seen)}`;
  p.tags.replaceChildren(...device.tags.map((tag) => Object.assign(document.createElement("span"), { textContent: tag })));
  p.play.disabled = p.stop.disabled = readOnly || !device.connected;
}

function time(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "never";
}

// Actions.

async function act(ids, action, body = {}) {
  let ok = 0;
  for (const id of ids) {
    try {
      const { data } = await post(`/api/devices/${enc(id)}/${action}`, body);
      ok += 1;
      if (ids.length === 1) log(`${action} ${id}: ${data.result}`);
      if (data.device) insert(data.device);
    } catch (error) {
      failed(`${action} ${id}`, error);
    }
  }
  if (ids.length > 1) log(`${action}: ${ok} of ${ids.length} done`);
  schedulePaint();
}

$("act-set-mode").addEventListener("click", () => act([...selected], "mode", { mode: Number($("act-mode").value) }));
$("act-play").addEventListener("click", () => act([...selected], "play"));
$("act-stop").addEventListener("click", () => act([...selected], "stop"));
$("act-announce").addEventListener("click", async () => {
  const how = $("announce-target").value;
  let target;
  if (how === "all") target = { all: true };
  else if (how === "tag") target = { tag: $("filter-tag").value.trim() };
  else target = { devices: [...selected] };
  try {
    const { data } = await post("/api/announce", { sound: $("announce-sound").value, target, interrupt: $("announce-interrupt").checked });
    const counts = Object.entries(data.counts).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`).join(", ");
    log(`announcement ${data.announcement} of ${data.sound}: ${counts || "no devices"}`);
  } catch (error) {
    failed("announce", error);
  }
});

// Sounds.

async function loadSounds() {
  const { data } = await get("/api/sounds");
  showSounds(data);
}

function showSounds(data) {
  const body = $("sounds").querySelector("tbody");
  body.replaceChildren(
    ...data.sounds.map((sound) => {
      const row = document.createElement("tr");
      for (const text of [sound.name, sound.source, sound.duration.toFixed(1), sound.modes.join(", ")]) {
        row.appendChild(Object.assign(document.createElement("td"), { textContent: text }));
      }
      const cell = document.createElement("td");
      if (sound.source === "uploaded") {
        const remove = button("Delete", "delete-sound", async () => {
          try {
            await del(`/api/sounds/${enc(sound.name)}`);
            log(`deleted ${sound.name}`);
          } catch (error) {
            failed(`delete ${sound.name}`, error);
          }
        });
        cell.appendChild(remove);
      }
      row.appendChild(cell);
      return row;
    }),
  );
  for (const id of ["announce-sound", "assign-sound"]) {
    const select = $(id);
    const keep = select.value;
    select.replaceChildren(...data.sounds.map((s) => Object.assign(document.createElement("option"), { value: s.name, textContent: s.name })));
    if (data.sounds.some((s) => s.name === keep)) select.value = keep;
  }
}

$("sound-upload").addEventListener("click", async () => {
  const file = $("sound-file").files[0];
  const name = $("sound-name").value.trim() || (file ? file.name.replace(/\.[^.]*$/, "") : "");
  if (!file) return log("choose a sound file first", true);
  try {
    const { status } = await api(`/api/sounds/${enc(name)}`, { method: "PUT", body: file, contentType: file.type });
    log(`${status === 201 ? "uploaded" : "replaced"} ${name}`);
    await loadSounds();
  } catch (error) {
    failed(`upload ${name}`, error);
  }
});

$("assign-button").addEventListener("click", async () => {
  const mode = Number($("assign-mode").value);
  const sound = $("assign-sound").value;
  try {
    await put(`/api/modes/${mode}`, { sound });
    log(`mode ${mode} plays ${sound}`);
  } catch (error) {
    failed(`assign mode ${mode}`, error);
  }
});

// Live events.

function onEvent({ type, data }) {
  if (type === "device") {
    const isNew = !devices.has(data.device_id);
    const wasShown = !isNew && shown.includes(data.device_id);
    insert(data);
    if (isNew || matches(data, filters()) !== wasShown) refilter();
    else schedulePaint();
  } else if (type === "removed") {
    if (devices.delete(data.device_id)) {
      order.splice(lowerBound(order, data.device_id), 1);
      selected.delete(data.device_id);
      refilter();
    }
  } else if (type === "sounds") {
    showSounds(data);
  } else if (type === "announcement") {
    log(`announcement ${data.announcement} of ${data.sound} to ${data.target}`);
  } else if (type === "reset") {
    restart();
  }
}

function onState(state) {
  $("live").textContent = state;
  $("live").classList.toggle("live", state === "live");
}

async function restart() {
  if (stream) stream.stop();
  const eventId = await loadDevices();
  stream = new EventStream({ onEvent, onState, onUnauthorized: () => askForToken("the token was refused") });
  stream.start(eventId);
}

async function start() {
  try {
    const { data } = await get("/api/whoami");
    readOnly = data.role === "readonly";
    $("who").textContent = `${data.who} (${data.role})`;
    for (const el of document.querySelectorAll("[data-acts]")) el.disabled = readOnly;
    await Promise.all([restart(), loadSounds()]);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) askForToken();
    else failed("loading", error);
  }
}

start();
