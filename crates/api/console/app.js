// The zkcoproc console: a page per hash route, built from the REST API (/v1/...), with live
// updates from its server-sent event streams (read with fetch, so the API key goes in a header).
// Everything the service returns is untrusted text: it is put in the page with textContent
// (the `el` helper), never as HTML.
"use strict";

const main = document.getElementById("main");
const KEY = "zkcoproc.key";
let streams = []; // AbortControllers of the current page's event streams

// ---------- helpers ----------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// Replaces a node's children, leaving out null, undefined and false (which replaceChildren would
// show as text).
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function headers(extra) {
  const h = Object.assign({}, extra);
  const key = sessionStorage.getItem(KEY);
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, options) {
  const o = Object.assign({}, options);
  o.headers = headers(o.body ? { "Content-Type": "application/json" } : {});
  const r = await fetch(path, o);
  if (!r.ok) {
    let code = "http_" + r.status, message = r.statusText;
    try {
      const b = await r.json();
      code = b.error.code;
      message = b.error.message;
    } catch (_) { /* not an API error body */ }
    throw new ApiError(r.status, code, message);
  }
  const type = r.headers.get("content-type") || "";
  return type.includes("json") ? r.json() : r.arrayBuffer();
}

// Reads a server-sent event stream; calls onEvent(name, data) for each event until the page
// changes or the caller aborts the returned controller. Reconnects after a dropped connection
// (the callers re-read what they show).
function stream(path, onEvent, onOpen) {
  const ctl = new AbortController();
  streams.push(ctl);
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const r = await fetch(typeof path === "function" ? path() : path, { headers: headers(), signal: ctl.signal });
        if (!r.ok) throw new ApiError(r.status, "stream", "event stream: HTTP " + r.status);
        if (onOpen) onOpen();
        const reader = r.body.getReader();
        const text = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += text.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let name = "message", data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) data += line.slice(5).trim();
            }
            if (data) onEvent(name, JSON.parse(data));
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
        if (e instanceof ApiError && e.status >= 400 && e.status < 500) return;
      }
      await new Promise((res) => setTimeout(res, 2000)); // the stream ended: reconnect
    }
  })();
  return ctl;
}

// A link that runs `f` instead of navigating.
function action(text, f) {
  return el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); f(); } }, text);
}

function short(id) {
  return id ? id.slice(0, 12) + "…" : "";
}

function statusBadge(s) {
  return el("span", { class: "status " + s, "data-status": s }, s);
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function when(t) {
  return t ? new Date(t).toLocaleString() : "";
}

function errorBox(e) {
  return el("p", { class: "error", role: "alert" }, e.code ? `${e.code}: ${e.message}` : String(e.message || e));
}

function json(v) {
  return el("pre", {}, JSON.stringify(v, null, 2));
}

function download(name, data, type) {
  const url = URL.createObjectURL(new Blob([data], { type: type || "application/octet-stream" }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function b64(buffer) {
  const bytes = new Uint8Array(buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function unb64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function table(head, rows, attrs) {
  return el("table", attrs || {}, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
}

function page(title, ...content) {
  fill(main, el("h1", {}, title), ...content);
}

// ---------- programs ----------

async function programsPage() {
  const list = el("section", {}, "Loading…");
  const deployOut = el("div");
  const form = el("form", { id: "deploy-form" },
    el("div", { class: "form inline" },
      el("label", {}, "Controller (.wasm) ", el("input", { type: "file", name: "controller", required: true })),
      el("label", {}, "Circuit (ELF) ", el("input", { type: "file", name: "circuit", required: true })),
      el("label", {}, "Volume MiB ", el("input", { type: "number", name: "volume", min: 1, placeholder: "default", class: "narrow" })),
      el("button", { class: "primary", type: "submit" }, "Deploy")),
    deployOut);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(deployOut, "Deploying…");
    try {
      const body = {
        controller: b64(await form.controller.files[0].arrayBuffer()),
        circuit: b64(await form.circuit.files[0].arrayBuffer()),
      };
      if (form.volume.value) body.volume_size_mb = Number(form.volume.value);
      const d = await api("/v1/programs", { method: "POST", body: JSON.stringify(body) });
      fill(deployOut,
        el("p", { class: "ok", id: "deployed" }, d.created ? "Deployed " : "Already deployed ",
          el("a", { href: "#/programs/" + d.program_id }, d.program_id)),
        d.webhook_secret ? el("p", {}, "Webhook secret (shown once): ", el("code", {}, d.webhook_secret)) : null);
      load();
    } catch (e) {
      fill(deployOut, errorBox(e));
    }
  });
  async function load() {
    try {
      const { programs } = await api("/v1/programs");
      fill(list, programs.length ? table(
        ["Program", "Image id", "Created", "Owner", "Tasks", "Volume"],
        programs.map((p) => el("tr", {},
          el("td", {}, el("a", { href: "#/programs/" + p.program_id, class: "mono" }, short(p.program_id))),
          el("td", { class: "mono" }, short(p.image_id)),
          el("td", {}, when(p.created_at)),
          el("td", {}, p.owner || el("span", { class: "muted" }, "—")),
          el("td", {}, Object.entries(p.tasks).map(([s, n]) => [statusBadge(s), " ", n, " "])),
          el("td", {}, p.volume ? `${bytes(p.volume.stored_bytes)} stored of ${bytes(p.volume.size)} (v${p.volume.version})` : el("span", { class: "muted" }, "not written")))),
        { id: "programs" }) : el("p", { class: "muted" }, "No programs yet: deploy one below, or with `zkcoproc deploy`."));
    } catch (e) {
      fill(list, errorBox(e));
    }
  }
  page("Programs", list, el("h2", {}, "Deploy a program"), el("section", {}, form));
  load();
}

// ---------- one program ----------

async function programPage(id) {
  let p;
  try {
    p = await api("/v1/programs/" + id);
  } catch (e) {
    return page("Program", errorBox(e));
  }
  const submitOut = el("div"), dryOut = el("div");
  const args = el("textarea", { id: "args", name: "args" }, "{}");
  const submit = el("form", { id: "submit-form" }, el("label", {}, "Arguments (JSON)"), args,
    el("div", { class: "inline form" },
      el("button", { class: "primary", type: "submit" }, "Request a proof"),
      el("button", { type: "button", id: "dry-run", onclick: dryRun }, "Dry run (no proof)")),
    submitOut, dryOut);
  submit.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(submitOut, "Submitting…");
    try {
      const body = JSON.stringify({ args: JSON.parse(args.value) });
      const t = await api(`/v1/programs/${id}/proofs`, { method: "POST", body });
      location.hash = "#/tasks/" + t.task_id;
    } catch (e) {
      fill(submitOut, errorBox(e));
    }
  });
  async function dryRun() {
    fill(dryOut, "Running the controller…");
    try {
      const body = JSON.stringify({ args: JSON.parse(args.value) });
      fill(dryOut, el("h2", {}, "Dry run"), json(await api(`/v1/programs/${id}/witnesses`, { method: "POST", body })));
    } catch (e) {
      fill(dryOut, errorBox(e));
    }
  }
  const secretOut = el("span");
  async function rotate() {
    try {
      const r = await api(`/v1/programs/${id}/webhook-secret`, { method: "POST", body: "{}" });
      fill(secretOut, " New secret (shown once; the old one signs nothing from now on): ", el("code", {}, r.webhook_secret));
    } catch (e) {
      fill(secretOut, errorBox(e));
    }
  }
  const tasks = el("div");
  const volume = el("div", { id: "volume" });
  page("Program " + short(id),
    el("section", {}, el("dl", {},
      el("dt", {}, "Program id"), el("dd", { class: "mono" }, p.program_id),
      el("dt", {}, "Image id"), el("dd", { class: "mono" }, p.image_id),
      el("dt", {}, "Created"), el("dd", {}, when(p.created_at)),
      el("dt", {}, "Owner"), el("dd", {}, p.owner || "—"),
      el("dt", {}, "Controller / circuit"), el("dd", {}, `${bytes(p.controller_size)} / ${bytes(p.circuit_size)}`),
      el("dt", {}, "Volume size"), el("dd", {}, p.volume_size_mb ? p.volume_size_mb + " MiB" : "service default"),
      el("dt", {}, "Webhook"), el("dd", {}, p.callback_url || "—", " ",
        el("button", { type: "button", id: "rotate-secret", onclick: rotate }, "New webhook secret"), secretOut))),
    el("h2", {}, "Prove"), el("section", {}, submit),
    el("h2", {}, "Tasks"), el("section", {}, tasks),
    el("h2", {}, "Volume"), el("section", {}, volume));
  taskList(tasks, { program: id });
  browse(volume, id, "/");
}

// The FAT-16 volume browser: directories, file preview (text, else hex) and download.
async function browse(box, id, path) {
  fill(box, "Reading the volume…");
  let listing;
  try {
    listing = await api(`/v1/programs/${id}/fs?path=${encodeURIComponent(path)}`);
  } catch (e) {
    return fill(box, errorBox(e));
  }
  const preview = el("div", { id: "preview" });
  const join = (name) => (path.endsWith("/") ? path : path + "/") + name;
  const rows = listing.entries.map((e) => el("tr", {},
    el("td", { class: "mono" }, e.is_dir
      ? action(e.name + "/", () => browse(box, id, join(e.name)))
      : e.name),
    el("td", {}, e.is_dir ? "" : bytes(e.size)),
    el("td", {}, e.is_dir ? "" : [
      el("button", { type: "button", "data-preview": e.name, onclick: () => show(e.name) }, "Preview"), " ",
      el("button", { type: "button", "data-download": e.name, onclick: () => fetchFile(e.name).then((b) => download(e.name, b)).catch((x) => fill(preview, errorBox(x))) }, "Download")])));
  const up = path !== "/" ? action("↑ up", () => browse(box, id, path.replace(/\/[^/]+\/?$/, "") || "/")) : null;
  async function fetchFile(name) {
    const p = join(name).split("/").filter(Boolean).map(encodeURIComponent).join("/");
    return api(`/v1/programs/${id}/fs/${p}`);
  }
  async function show(name) {
    fill(preview, "Loading…");
    try {
      const data = new Uint8Array(await fetchFile(name));
      const head = data.subarray(0, 16384);
      const text = new TextDecoder("utf-8", { fatal: true });
      let shown;
      try {
        shown = text.decode(head);
        if (/[\x00-\x08\x0e-\x1f]/.test(shown)) throw new Error("binary");
      } catch (_) {
        const hex = [];
        for (let i = 0; i < Math.min(head.length, 1024); i += 16) {
          const row = Array.from(head.subarray(i, i + 16), (b) => b.toString(16).padStart(2, "0")).join(" ");
          hex.push(i.toString(16).padStart(6, "0") + "  " + row);
        }
        shown = hex.join("\n");
      }
      fill(preview, el("h2", {}, `${name} (${bytes(data.length)})`), el("pre", { id: "preview-text" }, shown));
    } catch (e) {
      fill(preview, errorBox(e));
    }
  }
  fill(box, el("p", { class: "mono" }, "Volume: ", path, " ", up),
    rows.length ? table(["Name", "Size", ""], rows, { id: "files" }) : el("p", { class: "muted" }, "Empty."), preview);
}

// ---------- tasks ----------

// A task table that follows /v1/events: rows change status in place, new tasks appear on top.
async function taskList(box, filter) {
  const q = new URLSearchParams();
  if (filter.status) q.set("status", filter.status);
  if (filter.program) q.set("program", filter.program);
  let listing;
  try {
    listing = await api("/v1/tasks?" + q);
  } catch (e) {
    return fill(box, errorBox(e));
  }
  const tbody = el("tbody");
  const rows = new Map();
  const row = (t) => {
    const r = el("tr", { "data-task": t.id },
      el("td", {}, el("a", { href: "#/tasks/" + t.id, class: "mono" }, t.id)),
      el("td", { class: "mono" }, el("a", { href: "#/programs/" + t.program_id }, short(t.program_id))),
      el("td", { class: "st" }, statusBadge(t.status)),
      el("td", {}, when(t.created_at)),
      el("td", { class: "upd" }, when(t.updated_at)),
      el("td", {}, t.error_code || ""));
    rows.set(t.id, r);
    return r;
  };
  listing.tasks.forEach((t) => tbody.append(row(t)));
  const empty = el("p", { class: "muted" }, "No tasks.");
  fill(box, el("table", { id: "tasks" },
    el("thead", {}, el("tr", {}, ["Task", "Program", "Status", "Created", "Updated", "Error"].map((h) => el("th", {}, h)))), tbody),
    listing.tasks.length ? "" : empty,
    listing.next_before ? el("p", { class: "muted" }, "Showing the newest " + listing.tasks.length + ".") : "");
  let after = listing.event_seq;
  stream(() => "/v1/events?after=" + after, (name, c) => {
    if (name !== "task") return;
    after = Math.max(after, c.seq);
    if (filter.program && c.program_id !== filter.program) return;
    const r = rows.get(c.task_id);
    if (r) {
      if (filter.status && c.status !== filter.status) { r.remove(); rows.delete(c.task_id); return; }
      r.querySelector(".st").replaceChildren(statusBadge(c.status));
      r.querySelector(".upd").textContent = when(c.at);
    } else if (!filter.status || c.status === filter.status) {
      empty.remove();
      tbody.prepend(row({ id: c.task_id, program_id: c.program_id, status: c.status, created_at: c.at, updated_at: c.at }));
    }
  });
}

function tasksPage(params) {
  const status = params.get("status") || "", program = params.get("program") || "";
  const select = el("select", { name: "status" }, el("option", { value: "" }, "any status"),
    ["queued", "witnessing", "proving", "verifying", "delivering", "done", "failed", "cancelled"].map((s) => el("option", { value: s, selected: s === status }, s)));
  const prog = el("input", { name: "program", placeholder: "program id", value: program, size: 40 });
  const form = el("form", { class: "inline" }, "Status ", select, " Program ", prog, el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (select.value) q.set("status", select.value);
    if (prog.value.trim()) q.set("program", prog.value.trim());
    location.hash = "#/tasks" + (q.toString() ? "?" + q : "");
  });
  const box = el("div");
  page("Tasks", el("section", {}, form), el("section", {}, box));
  taskList(box, { status, program });
}

// ---------- one task ----------

function taskPage(id) {
  const body = el("div");
  const progressBox = el("div", { id: "progress" });
  const verdict = el("div", { id: "verdict" });
  page("Task " + id, progressBox, body);
  let last = null;
  async function refresh() {
    let t;
    try {
      t = await api("/v1/tasks/" + id);
    } catch (e) {
      return fill(body, errorBox(e));
    }
    last = t;
    render(t);
  }
  function render(t) {
    const times = t.history.map((h) => Date.parse(h.at));
    const timeline = t.history.map((h, i) => el("tr", {},
      el("td", {}, statusBadge(h.status)), el("td", {}, when(h.at)),
      el("td", {}, i + 1 < times.length ? ((times[i + 1] - times[i]) / 1000).toFixed(3) + " s" : "")));
    const journal = t.journal || "";
    const finished = ["done", "failed", "cancelled"].includes(t.status);
    const actions = el("div", { class: "inline form" },
      t.status === "done" ? el("button", { type: "button", id: "download-receipt", onclick: receipt }, "Download receipt") : null,
      t.status === "done" ? el("button", { type: "button", class: "primary", id: "verify", onclick: verify }, "Verify") : null,
      finished ? null : el("button", { type: "button", id: "cancel", onclick: cancel }, "Cancel"));
    if (!finished) progress(t.progress);
    else fill(progressBox, );
    fill(body, 
      el("section", {}, el("dl", {},
        el("dt", {}, "Status"), el("dd", { id: "task-status" }, statusBadge(t.status)),
        el("dt", {}, "Program"), el("dd", { class: "mono" }, el("a", { href: "#/programs/" + t.program_id }, t.program_id)),
        el("dt", {}, "Root (pinned)"), el("dd", { class: "mono" }, t.root),
        el("dt", {}, "Arguments"), el("dd", { class: "mono" }, JSON.stringify(t.args)),
        el("dt", {}, "Receipt kind"), el("dd", {}, t.receipt_kind),
        el("dt", {}, "Submitter"), el("dd", {}, t.submitter || "—"),
        el("dt", {}, "Cycles"), el("dd", {}, t.user_cycles ?? "—"),
        el("dt", {}, "Attempts"), el("dd", {}, t.attempts),
        t.error ? [el("dt", {}, "Error"), el("dd", { class: "error" }, `${t.error.code}: ${t.error.message}`)] : null),
        actions, verdict),
      el("div", { class: "grid2" },
        el("section", {}, el("h2", {}, "Stages"), table(["Status", "At", "Took"], timeline, { id: "timeline" }),
          t.durations_ms.total !== undefined ? el("p", {}, "Total: " + (t.durations_ms.total / 1000).toFixed(3) + " s") : null),
        el("section", {}, el("h2", {}, "Journal"), journal ? el("dl", {},
          el("dt", {}, "Root"), el("dd", { class: "mono", id: "journal-root" }, journal.slice(0, 64)),
          el("dt", {}, "Output"), el("dd", { class: "mono", id: "journal-output" }, journal.slice(64) || "(empty)")) : el("p", { class: "muted" }, "Not proven yet."),
          el("h2", {}, "Result"), t.result !== null && t.result !== undefined ? json(t.result) : el("p", { class: "muted" }, "—"))),
      el("section", {}, el("h2", {}, "Logs"), Array.isArray(t.logs) && t.logs.length ? json(t.logs) : el("p", { class: "muted" }, "No logs.")),
      t.provers.length ? el("section", {}, el("h2", {}, "Provers"), table(["Lease", "Worker", "Issued", "Outcome"],
        t.provers.map((a) => el("tr", {}, el("td", { class: "mono" }, a.lease_id), el("td", {}, a.worker), el("td", {}, when(a.issued_at)),
          el("td", {}, a.outcome + (a.reason ? ` (${a.reason})` : "")))))) : null,
      t.callbacks.length || t.callback_url ? el("section", {}, el("h2", {}, "Webhook"), el("p", {}, `${t.callback_url || ""} ${t.callback_state || ""}`),
        json(t.callbacks)) : null);
  }
  function progress(p) {
    if (!p) return fill(progressBox, );
    fill(progressBox, el("section", {}, `Proving: segment ${p.done} of ${p.total} `,
      el("progress", { max: p.total, value: p.done })));
  }
  async function receipt() {
    try {
      const proof = await api(`/v1/tasks/${id}/proof`);
      download(`receipt-${id}.bin`, unb64(proof.receipt));
    } catch (e) {
      fill(verdict, errorBox(e));
    }
  }
  async function verify() {
    fill(verdict, "Verifying…");
    try {
      const v = await api("/v1/verify", { method: "POST", body: JSON.stringify({ task_id: id }) });
      fill(verdict, el("p", { class: v.valid ? "ok" : "error", id: "verdict-text" },
        v.valid ? "Valid: the receipt verifies and its root is one this service had." :
          v.receipt_valid ? "The receipt verifies, but its root is not one this service knows." : "Invalid receipt."),
      json(v));
    } catch (e) {
      fill(verdict, errorBox(e));
    }
  }
  async function cancel() {
    try {
      render(await api("/v1/tasks/" + id, { method: "DELETE" }));
    } catch (e) {
      fill(verdict, errorBox(e));
    }
  }
  refresh();
  // Status events come in bursts (the history is replayed first): one read of the task at a
  // time, and one more if events came meanwhile.
  let busy = false, again = false;
  async function refreshSoon() {
    if (busy) { again = true; return; }
    busy = true;
    do { again = false; await refresh(); } while (again);
    busy = false;
  }
  const events = stream("/v1/tasks/" + id + "/events", (name, data) => {
    if (name === "status") {
      refreshSoon();
      // The stream ends with the task: nothing more to follow.
      if (["done", "failed", "cancelled"].includes(data.status)) events.abort();
    } else if (name === "progress" && last && !["done", "failed", "cancelled"].includes(last.status)) {
      progress(data);
    }
  });
}

// ---------- root, domains and workers ----------

async function rootPage() {
  let r;
  try {
    r = await api("/v1/root");
  } catch (e) {
    return page("Root and domains", errorBox(e));
  }
  const heads = Array.isArray(r.domains) ? r.domains : [];
  const trust = Array.isArray(r.trust) ? r.trust : [];
  const lc = el("div");
  page("Root and domains",
    el("section", {}, el("dl", {},
      el("dt", {}, "Coprocessor root"), el("dd", { class: "mono", id: "root" }, r.root),
      el("dt", {}, "Updates"), el("dd", {}, r.seq),
      el("dt", {}, "Configured domains"), el("dd", {}, (r.configured || []).join(", ") || "—"))),
    el("h2", {}, "Domain heads"),
    el("section", {}, heads.length ? table(["Domain", "Block", "Hash", "State root", "Admitted by"], heads.map((h) => el("tr", {},
      el("td", {}, h.domain), el("td", {}, h.number), el("td", { class: "mono" }, short(h.hash)), el("td", { class: "mono" }, short(h.state_root)),
      el("td", {}, h.admitted_by + (h.beacon_slot !== undefined ? ` (beacon slot ${h.beacon_slot})` : ""))))) : el("p", { class: "muted" }, "No blocks in the root yet.")),
    el("h2", {}, "Trust"),
    el("section", {}, trust.length ? trust.map((s) => json(s)) : el("p", { class: "muted" }, "No domain is configured (serve --domain).")),
    lc);
  for (const name of r.configured || []) {
    api(`/v1/domains/${encodeURIComponent(name)}/light-client`)
      .then((s) => lc.append(el("h2", {}, "Light client: " + name), el("section", {}, json(s))))
      .catch(() => {});
  }
}

async function workersPage() {
  let w;
  try {
    w = await api("/v1/workers");
  } catch (e) {
    return page("Workers", errorBox(e));
  }
  page("Workers",
    el("h2", {}, "Recent outcomes per worker"),
    el("section", {}, w.workers.length ? table(["Worker", "Outcomes (newest 500 leases)", "Last lease"],
      w.workers.map((x) => el("tr", {}, el("td", {}, x.worker),
        el("td", {}, Object.entries(x.outcomes).map(([o, n]) => `${o} ${n}`).join(", ")), el("td", {}, when(x.last_lease_at)))),
      { id: "workers" }) : el("p", { class: "muted" }, "No prover has taken a lease yet.")),
    el("h2", {}, "Active leases"),
    el("section", {}, w.open_leases.length ? table(["Lease", "Task", "Worker", "Issued", "Expires"],
      w.open_leases.map((l) => el("tr", {}, el("td", { class: "mono" }, l.lease_id),
        el("td", {}, el("a", { href: "#/tasks/" + l.task_id, class: "mono" }, l.task_id)), el("td", {}, l.worker),
        el("td", {}, when(l.issued_at)), el("td", {}, when(l.expires_at))))) : el("p", { class: "muted" }, "None.")));
}

// ---------- API reference (from /openapi.json) ----------

async function apiPage() {
  let doc;
  try {
    doc = await api("/openapi.json");
  } catch (e) {
    return page("API reference", errorBox(e));
  }
  const byTag = new Map();
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const tag = (op.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push({ path, method, op });
    }
  }
  const sections = [];
  for (const [tag, ops] of byTag) {
    sections.push(el("h2", {}, tag), el("section", {}, ops.map(operation)));
  }
  page(`${doc.info.title} ${doc.info.version}`, el("p", {}, doc.info.description || "",
    " The document itself: ", el("a", { href: "/openapi.json" }, "/openapi.json"), "."), ...sections);

  function operation({ path, method, op }) {
    const params = op.parameters || [];
    const inputs = new Map();
    const out = el("div");
    const body = op.requestBody ? el("textarea", { placeholder: "request body (JSON)" }) : null;
    const fields = params.map((p) => {
      const input = el("input", { name: p.name, placeholder: p.schema && p.schema.pattern ? p.schema.pattern : "", size: 48 });
      inputs.set(p.name, [p, input]);
      return el("tr", {}, el("td", { class: "mono" }, p.name), el("td", {}, p.in + (p.required ? ", required" : "")),
        el("td", {}, p.description || ""), el("td", {}, input));
    });
    async function tryIt() {
      let url = path;
      const q = new URLSearchParams();
      for (const [name, [p, input]] of inputs) {
        if (p.in === "path") url = url.replace(`{${name}}`, encodeURIComponent(input.value));
        else if (p.in === "query" && input.value) q.set(name, input.value);
      }
      if (q.toString()) url += "?" + q;
      fill(out, "…");
      try {
        const r = await fetch(url, { method: method.toUpperCase(), headers: headers(body ? { "Content-Type": "application/json" } : {}), body: body ? body.value : undefined });
        const type = r.headers.get("content-type") || "";
        const text = type.includes("json") ? JSON.stringify(await r.json(), null, 2) : type.includes("event-stream") ? "(an event stream: open it with curl -N)" : type.startsWith("text") ? await r.text() : `(${(await r.arrayBuffer()).byteLength} bytes of ${type})`;
        fill(out, el("p", {}, `HTTP ${r.status}`), el("pre", {}, text));
      } catch (e) {
        fill(out, errorBox(e));
      }
    }
    const responses = Object.entries(op.responses || {}).map(([code, r]) => el("tr", {}, el("td", {}, code), el("td", {}, r.description || "")));
    return el("details", {},
      el("summary", {}, el("span", { class: "method " + method }, method), el("code", {}, path), " ", el("span", { class: "muted" }, op.summary || op.operationId || "")),
      op.description ? el("p", {}, op.description) : null,
      fields.length ? table(["Parameter", "In", "Description", "Value"], fields) : null,
      body, el("h3", {}, "Responses"), table(["Status", "Description"], responses),
      el("button", { type: "button", onclick: tryIt }, "Try it"), out);
  }
}

// ---------- routing and the key ----------

async function showIdentity() {
  const who = document.getElementById("identity");
  try {
    const me = await api("/v1/identity");
    who.textContent = me.identity ? "signed in as " + me.identity : me.keys_required ? "no key" : "open service";
    who.className = "";
  } catch (e) {
    who.textContent = e.status === 401 ? "this service needs an API key" : e.message;
    who.className = "error";
  }
}

document.getElementById("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("key");
  if (input.value) sessionStorage.setItem(KEY, input.value.trim());
  input.value = "";
  showIdentity();
  route();
});
document.getElementById("forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  showIdentity();
  route();
});

function route() {
  streams.forEach((s) => s.abort());
  streams = [];
  const [path, query] = (location.hash.slice(1) || "/programs").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === "#/" + parts[0]);
  // Ids from the address bar go into API paths: only well-formed ones (a crafted link must not
  // steer the page's requests, made with the reader's key, to another route).
  if (parts[0] === "programs" && parts[1]) {
    return /^[0-9a-f]{64}$/.test(parts[1]) ? programPage(parts[1]) : page("Program", errorBox(new Error("not a program id: " + parts[1])));
  }
  if (parts[0] === "tasks" && parts[1]) {
    return /^[0-9a-fA-F-]{36}$/.test(parts[1]) ? taskPage(parts[1]) : page("Task", errorBox(new Error("not a task id: " + parts[1])));
  }
  if (parts[0] === "tasks") return tasksPage(params);
  if (parts[0] === "root") return rootPage();
  if (parts[0] === "workers") return workersPage();
  if (parts[0] === "api") return apiPage();
  return programsPage();
}

window.addEventListener("hashchange", route);
showIdentity();
route();
