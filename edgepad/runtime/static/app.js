// edgepad installer live view: decisions over Server-Sent Events, previews fetched as images.
// Fail-closed display: when no fresh decision arrives within the service's health window the verdict shows STALE.
"use strict";
(function () {
  const STAGES = ["capture", "sync", "register", "locate", "preprocess", "infer", "policy", "total"];
  const MODALITIES = ["rgb", "ir", "depth"];
  const PREVIEWS = { rgb: "rgb.jpg", ir: "ir.jpg", depth: "depth.jpg", overlay: "ir.jpg?overlay=1&" };
  const $ = (id) => document.getElementById(id);
  let staleMs = 1000;
  let lastEventAt = 0;
  let lastSeq = 0;
  const loading = {};
  const fpsTimes = [];
  let reasonHints = {};

  function setText(id, text) { const el = $(id); if (el.textContent !== text) el.textContent = text; }

  function setConn(state, text) {
    document.body.dataset.conn = state;
    setText("conn", text);
  }

  function fmt(x, digits) { return (x === null || x === undefined) ? "—" : Number(x).toFixed(digits); }

  function renderReasons(items) {
    const el = $("reasons");
    const key = (items || []).join(",") + "|" + Object.keys(reasonHints).length;
    if (el.dataset.key === key) return;
    el.dataset.key = key;
    el.replaceChildren();
    // the first reason's hint also goes on the verdict card (above the fold on a phone)
    const first = (items || []).find((r) => r !== "ok" && r !== "live_votes");
    setText("verdict-hint", first ? (reasonHints[first] || first.replace(/_/g, " ")) : "");
    for (const r of (items && items.length ? items : ["—"])) {
      const li = document.createElement("li");
      li.dataset.reason = r;
      const code = document.createElement("code"); code.textContent = r;
      const hint = document.createElement("span"); hint.className = "hint"; hint.textContent = reasonHints[r] || "";
      li.append(code, hint);
      el.appendChild(li);
    }
  }

  function pct(x) { return (100 * Math.max(0, Math.min(1, Number(x) || 0))).toFixed(0) + "%"; }

  function renderView(v) {
    if (!v) return;
    const dist = v.face_distance_m;
    const dtext = dist === null || dist === undefined ? "no face depth"
      : Number(dist).toFixed(2) + " m" + (v.distance_measured ? "" : " (guessed from face size)");
    setText("distance", dtext);
    setText("distance-badge", "face " + (dist === null || dist === undefined ? "—" : Number(dist).toFixed(2) + " m"));
    const fill = v.depth_fill;
    setText("fill", fill === null || fill === undefined ? "—" : pct(fill));
    $("fill-bar").style.width = fill ? pct(fill) : "0";
    $("fill-bar").dataset.level = fill === null || fill === undefined ? "none"
      : fill < 0.5 ? "bad" : fill < 0.8 ? "warn" : "ok";
    const ir = v.ir;
    const sat = ir && ir.saturated > 0.01 ? " · " + pct(ir.saturated) + " saturated" : "";
    setText("ir-level", ir ? pct(ir.level) + " · " + ir.exposure + sat : "—");
    $("ir-bar").style.width = ir ? pct(ir.level) : "0";
    $("ir-bar").dataset.level = ir ? (ir.exposure === "ok" ? "ok" : "bad") : "none";
    if (v.depth_range_m) {
      setText("range-near", Number(v.depth_range_m[0]).toFixed(2) + " m");
      setText("range-far", Number(v.depth_range_m[1]).toFixed(2) + " m");
    }
    const streams = v.streams || {};
    for (const m of MODALITIES) {
      const s = streams[m];
      const rate = s ? (s.fps === null ? "—" : Number(s.fps).toFixed(1)) + " fps" : "—";
      setText("fps-" + m, s && s.drops ? rate + " · " + s.drops + " dropped" : rate);
    }
    const body = $("streams").tBodies[0];
    body.replaceChildren();
    for (const [m, s] of Object.entries(streams)) {
      const tr = document.createElement("tr");
      tr.dataset.stream = m;
      for (const t of [m, s.fps === null ? "—" : Number(s.fps).toFixed(1), String(s.drops)]) {
        const td = document.createElement("td"); td.textContent = t; tr.appendChild(td);
      }
      if (s.drops) tr.className = "drops";
      body.appendChild(tr);
    }
    const boxes = v.boxes || {};
    for (const m of Object.keys(PREVIEWS)) {
      const b = boxes[m === "overlay" ? "ir" : m];
      const fig = document.querySelector('.preview[data-modality="' + m + '"]');
      if (b) fig.dataset.box = b.join(","); else delete fig.dataset.box;
    }
  }

  function renderLatency(lat) {
    const body = $("latency").tBodies[0];
    body.replaceChildren();
    const names = STAGES.filter((s) => s in lat).concat(Object.keys(lat).filter((s) => !STAGES.includes(s)));
    const max = Math.max(1e-6, ...names.map((n) => Number(lat[n]) || 0));
    for (const n of names) {
      const tr = document.createElement("tr");
      tr.dataset.stage = n;
      if (n === "total") tr.className = "total";
      const name = document.createElement("td"); name.className = "name"; name.textContent = n;
      const barCell = document.createElement("td");
      const bar = document.createElement("div"); bar.className = "lbar";
      bar.style.width = (100 * (Number(lat[n]) || 0) / max).toFixed(1) + "%";
      barCell.appendChild(bar);
      const ms = document.createElement("td"); ms.className = "ms"; ms.textContent = fmt(lat[n], 2);
      tr.append(name, barCell, ms);
      body.appendChild(tr);
    }
  }

  function refreshPreview(m, seq) {
    if (loading[m]) return;           // one request in flight per image: never queue behind a slow link
    loading[m] = true;
    const img = $("img-" + m);
    const frame = img.parentElement;
    const probe = new Image();
    probe.onload = () => { img.src = probe.src; frame.classList.remove("empty"); loading[m] = false; };
    probe.onerror = () => { frame.classList.add("empty"); loading[m] = false; };
    const q = PREVIEWS[m];
    probe.src = "/v1/preview/" + q + (q.includes("?") ? "" : "?") + "seq=" + seq;
  }

  function onDecision(env) {
    const d = env.decision;
    lastEventAt = performance.now();
    lastSeq = env.seq;
    fpsTimes.push(lastEventAt);
    while (fpsTimes.length && lastEventAt - fpsTimes[0] > 2000) fpsTimes.shift();
    document.body.dataset.verdict = d.verdict;
    document.body.dataset.seq = String(env.seq);
    setText("verdict", d.verdict);
    $("lockout").hidden = !(d.reasons || []).includes("lockout");
    setText("score", fmt(d.score, 3));
    setText("threshold", fmt(d.threshold, 3));
    $("score-fill").style.width = d.score === null ? "0" : (100 * d.score).toFixed(1) + "%";
    $("threshold-mark").style.left = (100 * d.threshold).toFixed(1) + "%";
    setText("modalities", (d.modalities || []).join(" + ") || "none");
    const ev = Object.entries(d.evidence || {}).map(([k, v]) => k + " " + Number(v).toFixed(2));
    setText("evidence", ev.join(", ") || "—");
    renderReasons(d.reasons);
    if (env.view && Object.keys(env.view).length) renderView(env.view);
    setText("hints", (d.hints || []).join(", ").replace(/_/g, " ") || "—");
    renderLatency(d.latency_ms || {});
    setText("seq", String(env.seq));
    const fps = fpsTimes.length > 1 ? 1000 * (fpsTimes.length - 1) / (fpsTimes[fpsTimes.length - 1] - fpsTimes[0]) : 0;
    setText("fps", fps.toFixed(1));
    for (const m of Object.keys(PREVIEWS)) refreshPreview(m, env.seq);
  }

  // presentation events (/v1/events): newest first, the last MAX_EVENTS; seen ids dedupe the status prefill
  const MAX_EVENTS = 12;
  const seenEvents = new Set();

  function eventText(e) {
    const d = e.decision;
    if (e.event === "started") return ["started", e.cause ? "(" + e.cause.replace(/_/g, " ") + ")" : ""];
    if (e.event === "decided") {
      const ev = Object.entries((d && d.evidence) || {}).map(([k, v]) => k + " " + Number(v).toFixed(2));
      return ["decided " + e.verdict.toUpperCase(), "score " + fmt(d && d.score, 3) + " thr " +
              fmt(d && d.threshold, 3) + (ev.length ? " · evidence " + ev.join(", ") : "") + " · after " +
              e.frames + " frames"];
    }
    return ["ended", "(" + (e.cause || "").replace(/_/g, " ") + ") " + e.verdict + " after " + e.frames +
            " frames · live " + e.live_decisions + " spoof " + e.spoof_decisions];
  }

  function onEvent(e) {
    if (seenEvents.has(e.seq)) return;
    seenEvents.add(e.seq);
    const el = $("events");
    const none = el.querySelector("li.none");
    if (none) none.remove();
    const li = document.createElement("li");
    li.dataset.event = e.event;
    li.dataset.seq = String(e.seq);
    li.dataset.presentation = String(e.presentation);
    if (e.event !== "started") li.dataset.verdict = e.verdict;
    const [kind, detail] = eventText(e);
    const pn = document.createElement("span"); pn.className = "pn"; pn.textContent = "#" + e.presentation;
    const k = document.createElement("span"); k.className = "kind"; k.textContent = kind;
    const dt = document.createElement("span"); dt.className = "detail"; dt.textContent = detail;
    li.append(pn, k, dt);
    // keep seq order even when the status prefill arrives after a streamed event
    const after = Array.from(el.children).find((c) => Number(c.dataset.seq) < e.seq);
    el.insertBefore(li, after || null);
    while (el.children.length > MAX_EVENTS) el.lastElementChild.remove();
  }

  function connectEvents() {
    const es = new EventSource("/v1/events");
    for (const kind of ["started", "decided", "ended"]) {
      es.addEventListener(kind, (e) => {
        try { onEvent(JSON.parse(e.data)); } catch (err) { setConn("error", "bad presentation event: " + err); }
      });
    }
  }

  function checkStale() {
    const age = performance.now() - lastEventAt;
    if (lastSeq > 0 && age > staleMs && document.body.dataset.verdict !== "stale") {
      document.body.dataset.verdict = "stale";        // never keep showing an old LIVE as current
      setText("verdict", "stale");
      setConn(document.body.dataset.conn === "live" ? "stale" : document.body.dataset.conn,
              "no fresh decision for " + (age / 1000).toFixed(1) + " s");
    }
  }

  function connect() {
    const es = new EventSource("/v1/decisions/stream");
    es.addEventListener("open", () => setConn("live", "connected"));
    es.addEventListener("decision", (e) => {
      try { onDecision(JSON.parse(e.data)); setConn("live", "connected"); }
      catch (err) { setConn("error", "bad event: " + err); }
    });
    es.addEventListener("end", (e) => {
      let why = "runtime stopped";
      try { const o = JSON.parse(e.data); if (o.error) why += ": " + o.error; } catch (err) { /* keep default */ }
      setConn("error", why);
    });
    es.addEventListener("error", () => setConn("error", "disconnected, retrying…"));
  }

  async function loadStatus() {
    try {
      const r = await fetch("/v1/status", { cache: "no-store" });
      if (!r.ok) { setConn("error", "status " + r.status + (r.status === 401 ? ": open /?token=…" : "")); return; }
      const s = await r.json();
      if (s.health && s.health.max_age_ms) staleMs = s.health.max_age_ms;
      const model = s.model || {};
      setText("model", (model.name || "—") + (model.sha256 ? " · " + String(model.sha256).slice(0, 12) : ""));
      setText("source", s.source || "—");
      $("reset-lockout").hidden = !s.lockout_reset_supported;
      reasonHints = s.reason_hints || {};
      for (const e of ((s.events && s.events.recent) || [])) onEvent(e);
    } catch (err) { setConn("error", "status unavailable"); }
  }

  async function resetLockout() {
    const msg = $("action-msg");
    msg.textContent = "…";
    try {
      const r = await fetch("/v1/lockout/reset", { method: "POST", headers: { "Content-Type": "application/json" },
                                                    body: JSON.stringify({ reason: "live view" }) });
      const o = await r.json();
      msg.textContent = r.ok ? "lockout reset" : (o.message || ("error " + r.status));
    } catch (err) { msg.textContent = "request failed"; }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("reset-lockout").addEventListener("click", resetLockout);
    loadStatus();
    connect();
    connectEvents();
    setInterval(checkStale, 250);
  });
})();
