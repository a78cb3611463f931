// hybridface web page: plain JavaScript over the service's /v1 routes with fetch.
// The API key lives in sessionStorage and travels only in the X-API-Key header, never in a URL.
"use strict";

const KEY = "hybridface.apiKey";
const RANK = { read: 1, write: 2, admin: 3 };
const $ = (id) => document.getElementById(id);
let scope = null;

function key() { return sessionStorage.getItem(KEY); }

function show(el, text) { el.textContent = text; el.hidden = !text; }
function error(text) { show($("error"), text); if (text) show($("notice"), ""); }
function notice(text) { show($("notice"), text); if (text) show($("error"), ""); }

// One call to the service; a non-2xx answer throws its {"error": {code, message}} as it is.
async function api(method, path, body) {
  const headers = { "X-API-Key": key() || "" };
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, credentials: "omit", cache: "no-store" });
  } catch (e) {
    throw new Error(`cannot reach the service (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!res.ok) {
    const err = data && data.error ? data.error : { code: "http_" + res.status, message: text || res.statusText };
    throw new Error(`${res.status} ${err.code}: ${err.message}`);
  }
  return data;
}

async function run(task) {
  try { await task(); } catch (e) { error(e.message); }
}

function allowed(needs) { return scope !== null && RANK[scope] >= RANK[needs]; }

function applyScope() {
  document.querySelectorAll("[data-needs]").forEach((el) => {
    const ok = allowed(el.dataset.needs);
    el.classList.toggle("disabled", !ok);
    if ("disabled" in el) el.disabled = !ok;
    el.title = ok ? "" : `needs a ${el.dataset.needs} key`;
  });
}

async function whoami() {
  scope = null;
  if (!key()) {
    $("whoami").textContent = "No key yet: paste one (hybridface keys create prints it).";
    applyScope();
    return;
  }
  try {
    const me = await api("GET", "/v1/me");
    scope = me.scope;
    $("whoami").textContent = `Key "${me.name}" (${me.scope}).`;
    error("");
  } catch (e) {
    $("whoami").textContent = "This key was not accepted.";
    error(e.message);
  }
  applyScope();
  if (scope) await run(loadIdentities);
}

function button(label, needs, onClick, cls) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.dataset.needs = needs;
  if (cls) b.className = cls;
  b.addEventListener("click", () => run(onClick));
  return b;
}

async function loadIdentities() {
  const data = await api("GET", "/v1/identities");
  const body = $("identities").querySelector("tbody");
  body.replaceChildren();
  for (const item of data.identities) {
    const tr = document.createElement("tr");
    tr.dataset.name = item.name;
    const name = document.createElement("td");
    name.textContent = item.name;
    const count = document.createElement("td");
    count.textContent = item.templates;
    const actions = document.createElement("td");
    actions.className = "actions";
    actions.append(
      button("Rename", "write", async () => {
        const to = prompt(`New name for ${item.name}:`, item.name);
        if (!to || to === item.name) return;
        await api("PATCH", `/v1/identities/${encodeURIComponent(item.name)}`, { name: to });
        notice(`renamed ${item.name} to ${to}`);
        await loadIdentities();
      }),
      button("Delete", "admin", async () => {
        if (!confirm(`Delete ${item.name} and all its templates?`)) return;
        const r = await api("DELETE", `/v1/identities/${encodeURIComponent(item.name)}`);
        notice(`deleted ${r.identity} (${r.templates_removed} templates)`);
        await loadIdentities();
      }, "danger"),
    );
    tr.append(name, count, actions);
    body.append(tr);
  }
  $("totals").textContent = `(${data.identities.length} identities, ${data.templates} templates)`;
  applyScope();
}

async function enrol(files) {
  const name = $("enrol-name").value.trim();
  if (!name) throw new Error("type the person's name before dropping photos");
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("file", f, f.name);
  $("enrol-result").textContent = `enrolling ${files.length} photo(s) of ${name}...`;
  const r = await api("POST", `/v1/identities/${encodeURIComponent(name)}/faces?detect=largest`, form);
  $("enrol-result").textContent =
    `${r.identity}: ${r.template_ids.length} added, ${r.duplicates} already enrolled; ${r.templates} templates now.`;
  notice(`enrolled ${r.template_ids.length} photo(s) of ${r.identity}`);
  await loadIdentities();
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => { URL.revokeObjectURL(url); resolve(img); };
    img.onerror = () => reject(new Error(`${file.name}: the browser cannot show this image`));
    img.src = url;
  });
}

async function identify(files) {
  const file = files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  const r = await api("POST", "/v1/identify?k=3&detect=all", form);
  const canvas = $("identify-canvas");
  const list = $("identify-faces");
  list.replaceChildren();
  let img = null;
  try { img = await loadImage(file); } catch (e) { error(e.message); }
  if (img) {
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const line = Math.max(2, Math.round(img.naturalWidth / 200));
    ctx.lineWidth = line;
    ctx.font = `${Math.max(12, Math.round(img.naturalWidth / 30))}px sans-serif`;
    for (const face of r.results) {
      if (!face.box) continue;
      const [x, y, w, h] = face.box;
      const label = face.identity || "unknown";
      ctx.strokeStyle = ctx.fillStyle = face.identity ? "#1a7f37" : "#cf222e";
      ctx.strokeRect(x, y, w, h);
      const tw = ctx.measureText(label).width + 8;
      const th = parseInt(ctx.font, 10) + 6;
      ctx.fillRect(x - line / 2, Math.max(0, y - th), tw, th);
      ctx.fillStyle = "#fff";
      ctx.fillText(label, x + 4, Math.max(th - 6, y - 6));
    }
  }
  if (!r.results.length) {
    const li = document.createElement("li");
    li.textContent = "no face found in this photo";
    list.append(li);
  }
  for (const face of r.results) {
    const li = document.createElement("li");
    li.className = "face";
    const who = document.createElement("span");
    who.className = face.identity ? "name" : "unknown";
    who.textContent = face.identity || "unknown";
    const dist = face.distance === null ? "" : ` (distance ${face.distance.toFixed(3)})`;
    const cands = face.candidates.map((c) => `${c.identity} ${c.distance.toFixed(3)}`).join(", ");
    li.append(who, document.createTextNode(`${dist} — candidates: ${cands || "none"}`));
    list.append(li);
  }
  const t = r.threshold === null ? "no threshold (closed set)" : `threshold ${r.threshold.toFixed(3)}`;
  notice(`${r.results.length} face(s) in ${file.name}; ${t}`);
}

// what one key's session showed is not left on screen for the next key
function clearResults() {
  $("identities").querySelector("tbody").replaceChildren();
  $("totals").textContent = "";
  $("enrol-result").textContent = "";
  $("identify-faces").replaceChildren();
  const canvas = $("identify-canvas");
  canvas.width = canvas.height = 0;
}

function dropZone(zone, input, handler) {
  const take = (files) => {
    if (zone.classList.contains("disabled")) {
      error(`this needs a ${zone.dataset.needs} key`);
      return;
    }
    run(() => handler(Array.from(files)));
  };
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    take(e.dataTransfer.files);
  });
  input.addEventListener("change", () => { take(input.files); input.value = ""; });
}

document.addEventListener("DOMContentLoaded", () => {
  // anything pasted after the address (a query string or fragment) is dropped from the URL at once
  if (location.search || location.hash) history.replaceState(null, "", location.pathname);
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const k = $("key-input").value.trim();
    $("key-input").value = "";
    if (k && k !== key()) clearResults();
    if (k) sessionStorage.setItem(KEY, k);
    run(whoami);
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    clearResults();
    notice("key forgotten");
    run(whoami);
  });
  $("refresh").addEventListener("click", () => run(loadIdentities));
  $("calibrate").addEventListener("click", () => run(async () => {
    const far = parseFloat($("far").value);
    const c = await api("POST", `/v1/calibrate?far=${encodeURIComponent(far)}`);
    notice(`threshold ${c.threshold.toFixed(4)} at FAR ${(100 * c.far).toFixed(2)} % ` +
      `(FRR ${(100 * c.frr).toFixed(2)} %, ${c.genuine_pairs} genuine / ${c.impostor_pairs} impostor pairs)`);
  }));
  dropZone($("enrol-drop"), $("enrol-files"), enrol);
  dropZone($("identify-drop"), $("identify-files"), identify);
  run(whoami);
});
