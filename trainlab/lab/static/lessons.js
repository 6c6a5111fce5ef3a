/* trainlab lab: lessons -- every experiment of `trainlab reproduce`, run live (trainlab/lab/_lessons.py).
 *
 * The page lists the experiments (GET /api/lessons), starts one (POST /api/lessons/start), and follows
 * its events (GET /api/lessons/stream, server-sent events named start, check, result, figure, done,
 * failed, interrupted, end). A check is shown the moment the experiment measures it; the result
 * event then gives the final list (an experiment may remake a check) and the verdict; the figures
 * follow. The URL keeps the lesson run (#lesson=lessons/NAME/TIME): a reload replays its events.
 */
(function () {
  "use strict";
  const {$, el, api} = window.TLDom;  // dom.js: the helpers every page shares
  const qs = params => new URLSearchParams(params).toString();
  const num = v => (typeof v === "number" && isFinite(v)) ? (v === 0 || (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e4) ? +v.toPrecision(4) + "" : v.toExponential(2)) : "n/a";

  let catalog = [], runs = [], chosen = null, live = null;
  let trainChart = null;   // one chart on one canvas, reused by every training of every lesson

  // ---- the catalog ------------------------------------------------------------------------------
  async function loadCatalog() {
    let data;
    try { data = await api("/api/lessons"); } catch (e) { $("#catalog-err").textContent = e.message; return; }
    catalog = data.lessons;
    runs = data.runs;
    const presets = $("#preset");
    if (!presets.options.length) for (const p of data.presets) presets.append(el("option", {value: p, text: p}));
    const ul = $("#lesson-list");
    ul.textContent = "";
    for (const l of catalog) {
      const last = runs.find(r => r.experiment === l.name);
      const meta = [l.expected_seconds ? `~${Math.round(l.expected_seconds)} s (quick)` : "",
                    l.available ? "" : `not available: ${l.reason}`,
                    last ? `last run: ${last.status}${last.passed === true ? ", held" : last.passed === false ? ", did not hold" : ""}` : ""].filter(Boolean).join(" · ");
      ul.append(el("li", {class: chosen && chosen.name === l.name ? "current" : "", "data-name": l.name,
                          onclick: () => choose(l.name)},
        el("div", {class: "title", text: `${l.name}: ${l.title}`}),
        el("div", {class: "meta", text: meta})));
    }
  }

  function choose(name, keepLive) {
    chosen = catalog.find(l => l.name === name) || null;
    for (const li of document.querySelectorAll("#lesson-list li")) li.classList.toggle("current", li.dataset.name === name);
    if (!chosen) return;
    $("#lesson").hidden = false;
    $("#lesson-title").textContent = `${chosen.name}: ${chosen.title}`;
    $("#lesson-claim").textContent = chosen.claim;
    $("#lesson-source").textContent = `Source: ${chosen.source}`;
    const docs = $("#lesson-docs");
    docs.hidden = !chosen.docs_url;
    if (chosen.docs_url) { docs.href = chosen.docs_url; docs.textContent = `docs/${chosen.docs}.md`; }
    $("#lesson-note").href = chosen.note_url;
    $("#note-text").hidden = true;
    $("#lesson-expected").textContent = chosen.expected_seconds ? `measured: ~${Math.round(chosen.expected_seconds)} s at quick on 2 busy cores` : "";
    $("#start").disabled = !chosen.available;
    $("#lesson-err").textContent = chosen.available ? "" : `not available: ${chosen.reason}`;
    const past = runs.filter(r => r.experiment === name);
    const box = $("#past");
    box.textContent = past.length ? "earlier runs: " : "";
    for (const r of past.slice(0, 8)) {
      box.append(el("a", {href: `#lesson=${encodeURIComponent(r.path)}`, text: `${r.path.split("/").pop()} (${r.status}${r.passed === true ? ", held" : r.passed === false ? ", did not hold" : ""})`,
                          onclick: ev => { ev.preventDefault(); watch(r.path); }}), " ");
    }
    if (!keepLive && (!live || live.name !== name)) { stopFollowing(); $("#live").hidden = true; }
  }

  $("#show-note").addEventListener("click", async () => {
    if (!chosen) return;
    const pre = $("#note-text");
    if (!pre.hidden) { pre.hidden = true; return; }
    try {
      const r = await fetch(chosen.note_url);
      pre.textContent = r.ok ? await r.text() : (await r.json()).error;
    } catch (e) { pre.textContent = e.message; }
    pre.hidden = false;
  });

  // ---- one lesson run ---------------------------------------------------------------------------
  $("#start").addEventListener("click", async () => {
    if (!chosen) return;
    $("#lesson-err").textContent = "";
    try {
      const info = await api("/api/lessons/start", {name: chosen.name, preset: $("#preset").value});
      watch(info.path);
      loadCatalog();
    } catch (e) { $("#lesson-err").textContent = e.message; }
  });

  $("#stop").addEventListener("click", async () => {
    if (!live) return;
    $("#stop").disabled = true;
    try { await api("/api/lessons/stop", {path: live.path}); } catch (e) { $("#lesson-err").textContent = e.message; }
  });

  function stopFollowing() {
    if (live && live.source) live.source.close();
    if (live && live.timer) clearInterval(live.timer);
    live = null;
  }

  function thresholdText(c) {
    const u = c.unit || "";
    if (c.op === "between") return `between ${num(c.threshold[0])}${u} and ${num(c.threshold[1])}${u}`;
    return `${c.op === ">=" ? "≥" : "≤"} ${num(c.threshold)}${u}`;
  }

  function checkCard(c) {
    return el("div", {class: `check ${c.passed ? "pass" : "fail"}`, "data-name": c.name},
      el("span", {class: "verdict", text: c.passed ? "held" : "did not hold"}),
      el("div", {class: "name", text: c.name}),
      el("div", {text: c.claim}),
      el("div", {class: "nums", text: `measured ${num(c.measured)}${c.unit || ""}   needed ${thresholdText(c)}`}),
      c.explanation ? el("div", {class: "why", text: c.explanation}) : "");
  }

  function showCheck(c) {
    $("#checks-wait").hidden = true;
    const box = $("#checks");
    const old = [...box.querySelectorAll(".check")].find(d => d.dataset.name === c.name);
    const card = checkCard(c);
    if (old) old.replaceWith(card); else box.append(card);   // a remade check replaces its first measurement
    live.checks += 1;
    $("#live-count").textContent = `${box.querySelectorAll(".check").length} check(s) measured`;
  }

  function setStatus(s) {
    live.status = s;
    $("#live-status").textContent = s;
    const running = s === "running" || s === "starting";
    $("#stop").disabled = !running;
    if (!running && live.timer) { clearInterval(live.timer); live.timer = null; }
    if (!running) $("#live-progress > div").style.width = "100%";
  }

  function trainNote() {
    const t = live && live.training;
    if (!t) return;
    const epochs = t.total && t.perEpoch ? Math.ceil(t.total / t.perEpoch) : null;
    $("#train-note").textContent = `training ${t.index} · ${t.members} member(s)` +
      (t.epoch !== undefined ? ` · epoch ${num(t.epoch)}${epochs ? ` of ${epochs}` : ""}` : "") +
      (t.ended !== undefined ? " · done" : "");
  }

  function tick() {
    if (!live || !live.t0 || live.measured !== undefined) return;
    const t = (performance.now() - live.t0) / 1000 + (live.tStart || 0);
    const exp = live.expected;
    $("#live-time").textContent = `${t.toFixed(0)} s` + (exp ? ` of ~${Math.round(exp)} s measured at quick` : "");
    if (exp) $("#live-progress > div").style.width = `${Math.min(97, 100 * t / exp)}%`;
  }

  function watch(path) {
    stopFollowing();
    const name = path.split("/")[1];
    if (!chosen || chosen.name !== name) choose(name, true);
    history.replaceState(null, "", `#lesson=${encodeURIComponent(path)}`);
    live = {path, name, checks: 0, status: "starting", t0: null, expected: null};
    $("#live").hidden = false;
    $("#checks").replaceChildren(el("p", {class: "hint", id: "checks-wait", text: "measuring... the checks appear here as they are measured"}));
    $("#figures").textContent = "";
    $("#fig-title").hidden = true;
    $("#live-verdict").hidden = true;
    $("#live-count").textContent = "";
    $("#train-note").textContent = "";
    $("#train-charts").hidden = true;
    $("#train-none").hidden = false;
    if (trainChart) trainChart.setSeries([]);
    $("#live-time").textContent = "";
    $("#live-progress > div").style.width = "0";
    setStatus("starting");
    const mine = live;
    const es = new EventSource(`/api/lessons/stream?${qs({path})}`);
    live.source = es;
    const on = (ev, fn) => es.addEventListener(ev, m => {
      if (live !== mine) return;
      const e = JSON.parse(m.data);
      if (typeof e.t === "number" && live.t0 !== null) { live.tStart = e.t; live.t0 = performance.now(); }
      fn(e);
    });
    on("start", e => {
      setStatus("running");
      live.expected = e.expected_seconds;
      live.t0 = performance.now();
      live.tStart = e.t || 0;
      live.timer = setInterval(tick, 500);
    });
    on("train", e => {
      if (e.phase === "begin") {
        live.training = {index: e.index, members: e.members, total: e.total_steps, perEpoch: e.steps_per_epoch,
                         names: Array.from({length: e.members}, (_, i) => (e.labels && e.labels[i]) || `member ${i}`)};
        $("#train-none").hidden = true;
        $("#train-charts").hidden = false;
        if (!trainChart) trainChart = TLPlot.lineChart($("#train-chart"), {title: "", xLabel: "epoch", yLabel: "loss"});
        const colors = TLPlot.colors(e.members);
        trainChart.setSeries(live.training.names.map((n, i) => ({name: n, color: colors[i], points: [], marks: []})));
        trainNote();
      } else if (live.training) {
        live.training.ended = e.step;
        trainNote();
      }
    });
    on("progress", e => {
      const t = live.training;
      if (!t || !trainChart) return;
      t.step = e.step;
      if (typeof e.epoch === "number") t.epoch = e.epoch;
      if (!e.batch_loss) { trainNote(); return; }
      trainChart.opts.title = `training ${t.index}: loss of the last batch, per member`;
      trainChart.opts.yLabel = "batch loss";
      const x = typeof e.epoch === "number" ? e.epoch : e.step;
      e.batch_loss.forEach((v, i) => trainChart.addPoints(t.names[i] || `member ${i}`, [[x, v]]));
      trainNote();
    });
    on("diverged", e => {
      const t = live.training;
      if (t && trainChart) for (const m of e.members) trainChart.mark(t.names[m], (e.step || 0) / (t.perEpoch || 1), "diverged");
    });
    on("check", e => showCheck(e.check));
    on("result", e => {
      live.measured = e.seconds;
      $("#live-time").textContent = `measured in ${num(e.seconds)} s` + (live.status === "running" ? "; drawing the figures..." : "");
      $("#live-progress > div").style.width = "100%";
      // the final word: the result's checks, in order (an experiment may have remade one)
      $("#checks").replaceChildren(...e.checks.map(checkCard));
      $("#live-count").textContent = `${e.checks.filter(c => c.passed).length} of ${e.checks.length} check(s) held`;
      const v = $("#live-verdict");
      v.hidden = false;
      v.textContent = `${e.status === "held" ? "The claim held" : "The claim did not hold"} (${num(e.seconds)} s). ${e.summary || ""}` +
                      (e.notes && e.notes.length ? `  Note: ${e.notes.join(" ")}` : "");
    });
    on("figure", e => {
      $("#fig-title").hidden = false;
      $("#figures").append(el("figure", {},
        el("img", {src: `/api/viewer/file?${qs({path: `${path}/${e.file}`})}`, alt: e.title, loading: "lazy"}),
        el("figcaption", {}, el("b", {text: e.title}), e.caption)));
    });
    on("done", () => { setStatus("done"); if (live.measured !== undefined) $("#live-time").textContent = `measured in ${num(live.measured)} s`; });
    on("failed", e => { setStatus("failed"); $("#lesson-err").textContent = e.error; });
    on("interrupted", e => { setStatus("interrupted"); $("#lesson-err").textContent = e.error || "stopped"; });
    es.addEventListener("end", async () => {
      es.close();
      if (live === mine && (live.status === "running" || live.status === "starting")) {
        // the worker ended without a last word (killed): ask what the files say
        try { setStatus((await api(`/api/lessons/run?${qs({path})}`)).status); } catch (e) { /* keep */ }
      }
      loadCatalog();
    });
    es.onerror = () => { if (live === mine && es.readyState !== 2) $("#lesson-err").textContent = "connection lost; reconnecting..."; };
    es.onopen = () => { if (live === mine && $("#lesson-err").textContent.startsWith("connection")) $("#lesson-err").textContent = ""; };
  }

  // ---- start --------------------------------------------------------------------------------------
  function fromHash() {
    const h = location.hash.slice(1);
    if (h.startsWith("lesson=")) {
      const path = decodeURIComponent(h.slice(7));
      if (!live || live.path !== path) watch(path);
    }
  }
  window.addEventListener("hashchange", fromHash);
  loadCatalog().then(fromHash);
})();
