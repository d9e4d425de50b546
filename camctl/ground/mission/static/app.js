// camctl mission page: renders the messages of /ws (see camctl/mission/session.py) into the DOM.
// Hand-written, no libraries. Text from boards goes in with textContent only.
"use strict";

// commandsByPhase: which operator command can act in which phase (the server's hello says it)
const state = { operator: false, boards: new Map(), go: null, exported: null, commandsByPhase: {} };
// p99 of these is the bench figure mission_status_latency_ms: board wall clock at a PUB status -> DOM updated
window.camctlLatency = [];
window.camctlReady = false;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

// the camera table's columns; on a phone each row is a block of labelled cells (app.css)
const CAM_COLUMNS = ["camera", "state", "rate / schedule", "frames", "durable", "drops", "faults"];

function fmt(n, digits) { return (typeof n === "number" && isFinite(n)) ? n.toFixed(digits) : "–"; }
function rel(t) { return (typeof t === "number") ? (t >= 0 ? "T+" : "T") + t.toFixed(2) + " s" : ""; }

function card(view) {
  let c = state.boards.get(view.url);
  if (c) return c;
  const root = el("section", { class: "card", "data-url": view.url });
  c = {
    root,
    name: el("span", { class: "name" }), url: el("span", { class: "url", text: view.url }),
    reach: el("span", { class: "badge reach" }), verdict: el("span", { class: "badge verdict" }),
    why: el("p", { class: "verdict-reason", hidden: "" }),
    phase: el("span", { class: "phase-name" }), clock: el("span", { class: "clock" }),
    flight: el("span", { class: "flight-id" }), lines: el("span", { class: "lines" }),
    disk: el("span", { class: "disk" }), offset: el("span", { class: "offset" }),
    sensors: el("div", { class: "sensors", hidden: "" }), altRef: new Map(),
    cams: el("tbody"), checks: el("ul", { class: "checks" }), phases: el("ol", { class: "phases" }),
    ops: el("div", { class: "ops" }), dl: el("div", { class: "download", hidden: "" }),
    bar: el("progress", { max: "1", value: "0" }), dltext: el("span", { class: "dim" }),
    losses: el("ul", { class: "losses", hidden: "" }),
    previews: el("div", { class: "previews" }), hidden: el("p", { class: "previews-hidden dim", hidden: "" }),
    figures: new Map(), opres: el("span", { class: "op-result" }), release: null, landed_t: null, view,
  };
  const table = el("table", {}, el("thead", {}, el("tr", {}, ...CAM_COLUMNS.map(h => el("th", { text: h })))), c.cams);
  c.dl.append(el("div", { class: "dim", text: "download" }), c.bar, c.dltext, c.losses);
  c.head = el("div", { class: "head" }, c.name, c.reach, c.url);  // the verdict badge joins it when there is one
  root.append(c.head,
    el("div", { class: "phase" }, c.phase, c.clock), c.why,
    el("div", { class: "facts" }, c.flight, c.disk, c.offset, c.lines), c.sensors,
    table, c.checks, c.phases, c.ops, c.dl, c.previews, c.hidden);
  if (state.operator) {
    for (const name of ["arm", "disarm"]) {
      const b = el("button", { class: "op-" + name, text: name, hidden: "" });
      b.addEventListener("click", () => operate(view.url, c.name.textContent || view.url, name));
      c.ops.append(b);
    }
    c.ops.append(c.opres);
  }
  state.boards.set(view.url, c);
  document.getElementById("boards").append(root);
  return c;
}

function renderBoard(view) {
  const c = card(view);
  c.view = view;
  const st = view.status || {};
  c.root.dataset.board = view.name || "";
  c.root.classList.toggle("unreachable", !view.reachable);
  c.name.textContent = view.name || view.url;
  c.reach.textContent = view.reachable ? "reachable" : "UNREACHABLE";
  c.reach.className = "badge reach " + (view.reachable ? "ok" : "bad");
  c.reach.title = view.error || "";
  // a board silent in flight: where it was last heard, its clock stopped there (not a stale phase)
  const lost = view.lost_contact;
  c.root.classList.toggle("lost", !!lost);
  c.phase.textContent = lost ? "LOST CONTACT in " + lost.phase + (lost.t_rel_s != null ? " at " + rel(lost.t_rel_s) : "")
    : (st.phase || "?");
  // a button only where its command can act: arm in SAFE, disarm in ARMED and LANDED; none while
  // the board does not answer (its phase is stale)
  const offered = view.reachable ? (state.commandsByPhase[st.phase] || []) : [];
  for (const b of c.ops.querySelectorAll("button")) b.hidden = !offered.includes(b.textContent);
  c.flight.textContent = "flight " + (view.flight || "–");
  const free = st.disk_free_mb;
  c.disk.textContent = "disk free " + fmt(free, 0) + " MB" + (view.minutes != null ? " = " + fmt(view.minutes, 1) + " min" : "");
  c.offset.textContent = "clock " + (view.clock_ms != null ? (view.clock_ms >= 0 ? "+" : "") + fmt(view.clock_ms, 1) + " ms" : "–");
  const lines = st.lines || st.line_levels;
  c.lines.textContent = lines && typeof lines === "object"
    ? "lines " + Object.entries(lines).map(([k, v]) => k + "=" + v).join(" ") : "";
  c.cams.replaceChildren(...Object.entries(st.cameras || {}).map(([name, cam]) => el("tr", { "data-camera": name },
    el("td", { text: name }), el("td", { text: cam.state || "?" }),
    el("td", { text: fmt(cam.fps, 1) + " / " + fmt(cam.target_fps, 1) }),
    el("td", { text: String(cam.frames_captured ?? "–") }), el("td", { text: String(cam.durable_frames ?? "–") }),
    el("td", { class: cam.dropped ? "bad" : "", text: String(cam.dropped ?? "–") }),
    el("td", { class: cam.faults ? "bad" : "", text: String(cam.faults ?? "–") }))));
  for (const tr of c.cams.rows) [...tr.cells].forEach((td, i) => { td.dataset.label = CAM_COLUMNS[i] || ""; });
  renderSensors(c, view);
  c.phases.replaceChildren(...(view.phases || []).map(p => el("li", { class: "ph", text:
    p.phase + (p.event ? " on " + p.event : "") + (p.t_rel_s != null ? "  " + rel(p.t_rel_s) : "") })));
  c.release = view.release_ground_ms;
  const last = (view.phases || []).at(-1);
  c.landed_t = (st.phase === "LANDED" || st.phase === "SAFE") && last && last.t_rel_s != null ? last.t_rel_s : null;
  c.lost_t = lost ? lost.t_rel_s : undefined;
  tick(c);
  renderChecks(c);
  if (typeof view.via === "string" && view.via === "pub:status" && view.pub_wall_ns) {
    window.camctlLatency.push(performance.timeOrigin + performance.now() - view.pub_wall_ns / 1e6);
  }
  if (!window.camctlReady && view.reachable) {
    window.camctlReady = true;
    performance.mark("camctl-first-board");
  }
}

// live |a| of each IMU and altitude of each barometer (STATUS sensors, camctl/board/sensors/sampler.py),
// the altitude's change since arming (the watcher's sensor_base, taken when it saw the board arm) or,
// when it did not see that, since this page first showed the sensor
function renderSensors(c, view) {
  const sensors = (view.status || {}).sensors;
  const entries = sensors && typeof sensors === "object" ? Object.entries(sensors) : [];
  c.sensors.hidden = !entries.length;
  c.sensors.replaceChildren(...entries.map(([name, s]) => {
    const last = (s && s.last) || {};
    const span = el("span", { class: "sensor", "data-sensor": name, "data-kind": (s && s.kind) || "?" });
    span.title = (s && s.error) || "";
    span.dataset.ok = s && s.ok ? "1" : "";
    if (!s || !s.ok) {
      span.classList.add("bad");
      span.textContent = name + " not reading";
    } else if (s.kind === "imu") {
      span.textContent = name + " |a| " + fmt(last.accel_g, 2) + " g";
    } else if (s.kind === "baro") {
      const base = (view.sensor_base || {})[name];
      const armed = base && base.at === "arming" && typeof base.altitude_m === "number";
      if (!armed && !c.altRef.has(name) && typeof last.altitude_m === "number") c.altRef.set(name, last.altitude_m);
      const ref = armed ? base.altitude_m : c.altRef.get(name);
      const d = typeof last.altitude_m === "number" && typeof ref === "number" ? last.altitude_m - ref : null;
      span.textContent = name + " " + fmt(last.altitude_m, 1) + " m"
        + (d == null ? "" : " (" + (d >= 0 ? "+" : "") + fmt(d, 1) + " m since " + (armed ? "arming" : "page load") + ")");
    } else {
      span.textContent = name + " " + (s.kind || "?");
    }
    return span;
  }));
}

function tick(c) {
  if (c.release == null || c.lost_t !== undefined) { c.clock.textContent = ""; return; }
  const t = c.landed_t != null ? c.landed_t : (Date.now() - c.release) / 1000;
  c.clock.textContent = rel(t) + " from release";
}

function renderChecks(c) {
  const go = state.go;
  if (!go) return;
  const name = c.view.name || c.view.url;
  const mine = go.checks.filter(k => k.board === name);
  c.checks.hidden = go.stage !== "pre-drop";  // the pre-drop checks; in flight the phases say it all
  c.checks.replaceChildren(...mine.map(k => el("li", { class: k.ok ? "ok" : "bad", "data-check": k.check, text: k.detail })));
  // a sensor one of whose checks fails is red on the card too
  for (const span of c.sensors.children) {
    const bad = mine.some(k => !k.ok && k.check.startsWith(span.dataset.sensor + " "));
    span.classList.toggle("bad", bad || !span.dataset.ok);
  }
  const disk = mine.find(k => k.check === "disk");
  if (disk) c.disk.textContent = disk.detail;
  const clock = mine.find(k => k.check === "clock");
  if (clock) c.offset.textContent = clock.detail;
  // the board's flight verdict (camctl/ground/verdict.py): RECORDED / PARTIAL / LOST and why
  const v = (go.verdicts || {})[name];
  c.why.hidden = !v;
  if (!v) c.verdict.remove(); else if (!c.verdict.isConnected) c.head.insertBefore(c.verdict, c.url);
  c.root.dataset.verdict = v ? v.kind : "";
  if (v) {
    c.verdict.textContent = v.kind;
    c.verdict.className = "badge verdict " + (v.kind === "RECORDED" ? "ok" : v.kind === "LOST" ? "bad" : "warn");
    c.why.textContent = v.kind + ": " + v.reason;
  }
}

function renderGo(go) {
  state.go = go;
  const banner = document.getElementById("banner");
  const predrop = go.stage === "pre-drop";
  banner.className = "banner " + (go.stage === "lost contact" ? "nogo" : !predrop ? "flying" : go.go ? "go" : "nogo");
  banner.dataset.stage = go.stage;
  banner.dataset.done = go.done ? "1" : "";
  document.getElementById("verdict").textContent = !predrop ? go.stage.toUpperCase() : go.go ? "GO" : "NO-GO";
  // after the drop: "2 of 3 boards landed; rig-b: lost contact in DESCENT at T+4.2 s", then each board's verdict
  document.getElementById("failing").replaceChildren(...(!predrop ? (go.flight || []).map(f => el("li", { text: f }))
    : go.go ? [el("li", { text: "every check passes" })] : go.failing.map(f => el("li", { text: f }))));
  for (const c of state.boards.values()) renderChecks(c);
  if (state.exported) renderExport(state.exported);
}

function boardByName(name) {
  for (const c of state.boards.values()) if (c.view.name === name) return c;
  return null;
}

function renderDownload(m) {
  const c = boardByName(m.board);
  if (!c) return;
  c.dl.hidden = false;
  c.dl.dataset.state = m.state;
  c.bar.max = Math.max(1, m.total || 0);
  c.bar.value = m.state === "ok" ? c.bar.max : Math.min(m.done || 0, c.bar.max);
  c.dltext.textContent = m.state + ": " + fmt((m.done || 0) / 1e6, 1) + " / " + fmt((m.total || 0) / 1e6, 1) + " MB"
    + (m.detail ? " — " + m.detail : "");
  // what the flight's event log says was lost: "losses 2 (5 frames lost)", then a line per loss
  const lost = m.losses || [];
  c.losses.hidden = !lost.length;
  c.losses.dataset.lostFrames = String(m.lost_frames ?? 0);
  c.losses.replaceChildren(...(lost.length ? [m.losses_total, ...lost] : []).map(t => el("li", { text: t })));
}

// at most m.limit previews per board (the server picks them); a figure already shown keeps its <img>
function renderPreviews(m) {
  const c = boardByName(m.board);
  if (!c) return;
  const figures = new Map();
  for (const p of m.shown || []) {
    figures.set(p.url, c.figures.get(p.url) || el("figure", { class: "preview", "data-camera": p.camera },
      el("img", { src: p.url, alt: m.board + " " + p.camera + " " + p.seq, loading: "lazy", tabindex: "0" }),
      el("figcaption", { text: p.camera + " " + (p.phase || "") + " " + rel(p.t_rel_s) })));
  }
  c.figures = figures;
  c.previews.replaceChildren(...figures.values());
  c.hidden.hidden = !m.hidden;
  c.hidden.textContent = m.hidden ? m.hidden + " of " + m.total + " previews hidden (showing " + figures.size
    + ": the first of each phase, the last, evenly spaced between; all are in the download)" : "";
}

function renderCommand(m) {
  const c = state.boards.get(m.url);
  if (!c) return;
  // done (green); ignored by the board: changed nothing (amber); refused, not answered or a disarm
  // not saved (red). The server's text says which, in one line
  c.opres.className = "op-result " + (m.ok ? "ok" : m.code === "IGNORED" ? "warn" : "bad");
  c.opres.dataset.code = m.code || "";
  c.opres.textContent = m.text ? m.text : m.name + ": " + (m.ok ? "done, " + m.detail
    : "refused" + (m.code ? " " + m.code : "") + (m.detail ? ": " + m.detail : ""));
}

function renderExport(m) {
  const sec = document.getElementById("flight");
  const badge = document.getElementById("export-state");
  state.exported = m;
  if (m.state === "waiting") { sec.hidden = true; return; }
  sec.hidden = false;
  // "done" only when every board has a verdict and each is RECORDED; else what the export lacks
  const vs = Object.entries((state.go && state.go.verdicts) || {});
  const short = vs.filter(([, v]) => !v || v.kind !== "RECORDED");
  const whole = m.state === "done" && state.go && state.go.done && !short.length;
  badge.textContent = m.state === "done" && !whole ? "done: " + (vs.length - short.length) + " of " + vs.length + " boards recorded" : m.state;
  badge.className = "badge " + (whole ? "ok" : m.state === "failed" ? "bad" : "warn");
  document.getElementById("export-detail").textContent = m.detail || (m.state === "running" ? "exporting the flight…"
    : m.state === "done" && !whole ? short.map(([b, v]) => b + ": " + (v ? v.kind + ": " + v.reason : "no verdict yet")).join("; ") : "");
  if (m.state !== "done") return;
  if (m === state.rendered) return;  // the media of this export are on the page already
  state.rendered = m;
  document.getElementById("sheets").replaceChildren(
    ...(m.contact_sheet || []).map(u => el("img", { class: "contact-sheet", src: u, alt: "contact sheet", tabindex: "0" })),
    ...(m.timeline || []).map(u => el("img", { class: "timeline", src: u, alt: "timeline", tabindex: "0" })));
  document.getElementById("videos").replaceChildren(...(m.mp4 || []).map(v => el("figure", { class: "video" },
    el("video", { src: v.url, controls: "", preload: "auto", muted: "", "data-name": v.name }),
    el("figcaption", { text: v.name }))));
}

async function operate(url, name, command) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = command.toUpperCase() + " board " + name + " (" + url + ")?";
  dlg.returnValue = "";
  dlg.showModal();
  await new Promise(r => dlg.addEventListener("close", r, { once: true }));
  if (dlg.returnValue !== "ok") return;
  const res = await fetch("/api/command", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ url, name: command }) });
  const body = await res.json().catch(() => ({ error: "bad reply" }));
  // the board's answer also comes as a "command" message; a refusal by this page's server comes only here
  if (!body.ok) renderCommand({ url, name: command, ok: false, code: body.code || "PAGE " + res.status, detail: body.error });
}

function handle(m) {
  switch (m.type) {
    case "hello":
      state.operator = !!m.operator; state.commandsByPhase = m.commands_by_phase || {};
      document.body.classList.toggle("operator", state.operator); break;
    case "board": renderBoard(m.view); break;
    case "go": renderGo(m); break;
    case "download": renderDownload(m); break;
    case "previews": renderPreviews(m); break;
    case "command": renderCommand(m); break;
    case "export": renderExport(m); break;
  }
}

function connect() {
  const link = document.getElementById("link");
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  ws.onopen = () => { link.textContent = "live"; link.className = "badge ok"; };
  ws.onmessage = ev => handle(JSON.parse(ev.data));
  ws.onclose = () => {
    link.textContent = "mission server gone: reconnecting"; link.className = "badge bad";
    setTimeout(connect, 1000);
  };
}

// a preview, contact sheet or timeline opens larger on a click, tap or Enter; Escape, a click or the
// close button shuts it (a modal <dialog>); "full size" is the file itself
function openLarge(img) {
  const box = document.getElementById("lightbox");
  const caption = img.closest("figure")?.querySelector("figcaption")?.textContent || img.alt;
  box.querySelector("img").src = img.src;
  box.querySelector("img").alt = img.alt;
  box.querySelector(".caption").textContent = caption;
  box.querySelector("a.full").href = img.src;
  box.showModal();
}

const LARGER = ".previews img, #sheets img";
document.addEventListener("click", ev => {
  const img = ev.target.closest && ev.target.closest(LARGER);
  if (img) openLarge(img);
  else if (ev.target.id === "lightbox" || ev.target.closest("#lightbox img")) document.getElementById("lightbox").close();
});
document.addEventListener("keydown", ev => {
  if (ev.key === "Enter" && ev.target.matches && ev.target.matches(LARGER)) openLarge(ev.target);
});

setInterval(() => { for (const c of state.boards.values()) tick(c); }, 100);
connect();
