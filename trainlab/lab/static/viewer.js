/* trainlab lab: the viewer of runs (trainlab train) and studies (trainlab tune) under the lab root.
 *
 * Server side: trainlab/lab/_viewer.py. The list is polled every few seconds; the open run or study
 * is followed through a server-sent event stream (named events: run, metrics, study, end). Metrics
 * events carry their byte offset as the event id, so a browser that reconnects goes on where it
 * stopped; a "reset" (the run's metrics.jsonl was rewritten by --resume) clears the curves first.
 * The URL keeps what is open (#run=PATH or #study=PATH): a reload opens it again and receives
 * everything from the start.
 */
(function () {
  "use strict";
  const {$, el} = window.TLDom;  // dom.js: the helpers every page shares
  const qs = params => new URLSearchParams(params).toString();
  const num = (v, d = 4) => (typeof v === "number" && isFinite(v)) ? (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : +v.toPrecision(d) + "") : "-";

  async function getJSON(url) {
    const r = await fetch(url);
    let data = {};
    try { data = await r.json(); } catch (e) { data = {error: `${r.status} ${r.statusText}`}; }
    if (!r.ok) throw new Error(data.error || `${r.status}`);
    return data;
  }

  function statusSpan(s) { return el("span", {class: `st st-${s}`, text: s}); }

  // ---- the list ----------------------------------------------------------------------------------
  let root = "";
  let current = null;   // {kind, path, source, ...}

  async function refreshList() {
    let data;
    try { data = await getJSON("/api/viewer/list"); } catch (e) { $("#list-err").textContent = e.message; return; }
    $("#list-err").textContent = "";
    root = data.root || "";
    $("#server-note").textContent = root ? `root: ${root}` : "";
    const rb = $("#run-table tbody");
    rb.textContent = "";
    for (const r of data.runs) {
      const tr = el("tr", {class: "pick" + (current && current.path === r.path ? " current" : ""), "data-path": r.path,
                           onclick: () => openRun(r.path)},
        el("td", {text: r.path}), el("td", {}, statusSpan(r.status)),
        el("td", {text: (r.members || []).join("; "), title: (r.members || []).join("\n")}),
        el("td", {text: r.epochs ? `${num(r.epoch, 3)} / ${r.epochs}` : num(r.epoch, 3)}),
        el("td", {text: (r.modified || "").replace("T", " ").slice(0, 19)}));
      rb.append(tr);
    }
    $("#no-runs").hidden = data.runs.length > 0;
    const sb = $("#study-table tbody");
    sb.textContent = "";
    for (const s of data.studies) {
      const c = s.counts || {};
      const tr = el("tr", {class: "pick" + (current && current.path === s.path ? " current" : ""), "data-path": s.path,
                           onclick: () => openStudy(s.path)},
        el("td", {text: s.path}), el("td", {}, statusSpan(s.status)),
        el("td", {text: c.budget ? `${c.with_result} / ${c.budget}` : (c.with_result ?? "-")}),
        el("td", {text: s.best ? `${num(s.best.value)} (#${s.best.number})` : (s.error || "-")}));
      sb.append(tr);
    }
    $("#no-studies").hidden = data.studies.length > 0;
  }

  function close() {
    if (current && current.source) current.source.close();
    current = null;
    $("#run-view").hidden = true;
    $("#study-view").hidden = true;
    $("#view-err").textContent = "";
  }

  function markCurrent() {
    for (const tr of document.querySelectorAll("tbody tr.pick")) tr.classList.toggle("current", !!current && tr.dataset.path === current.path);
  }

  function figures(box, base, files, stamp) {
    box.textContent = "";
    for (const f of files || []) {
      const src = `/api/viewer/file?${qs({path: `${base}/${f}`, t: stamp || ""})}`;
      box.append(el("figure", {}, el("img", {src, alt: f, loading: "lazy"}), el("figcaption", {text: f})));
    }
  }

  function follow(url, handlers) {
    const es = new EventSource(url);
    const mine = current;
    for (const [name, fn] of Object.entries(handlers)) {
      es.addEventListener(name, m => { if (current === mine) fn(JSON.parse(m.data)); });
    }
    es.addEventListener("end", () => es.close());   // the run or study is over: no reconnecting
    es.onerror = () => { if (current === mine && es.readyState !== 2) $("#view-err").textContent = "connection lost; reconnecting..."; };
    es.onopen = () => { if (current === mine) $("#view-err").textContent = ""; };
    return es;
  }

  // ---- a run ------------------------------------------------------------------------------------
  const METRICS = [["batch_loss", "loss of the last batch", false], ["train_loss", "training loss", false],
                   ["val_loss", "validation loss", false], ["train_acc", "training accuracy", false],
                   ["val_acc", "validation accuracy", false], ["test_acc", "test accuracy", false],
                   ["lr", "learning rate", true]];

  function openRun(path) {
    close();
    current = {kind: "run", path, names: [], colors: [], charts: {}, last: {}, marked: new Set(), info: null};
    history.replaceState(null, "", `#run=${encodeURIComponent(path)}`);
    $("#view-title").textContent = `run ${path}`;
    $("#run-view").hidden = false;
    $("#rv-charts").textContent = "";
    $("#rv-members tbody").textContent = "";
    $("#rv-figures").textContent = "";
    markCurrent();
    current.source = follow(`/api/viewer/stream?${qs({path})}`, {run: onRunInfo, metrics: onMetrics});
  }

  function memberName(i, rec) {
    const c = current;
    if (c.names[i] === undefined) {
      c.names[i] = (rec && rec.member_label) || `member ${i}`;
      c.colors = TLPlot.colors(Math.max(c.names.length, c.info && c.info.size || 0));
    }
    return c.names[i];
  }

  function onRunInfo(info) {
    const c = current;
    c.info = info;
    if (info.members && info.members.length) {
      c.names = info.members.slice();
      c.colors = TLPlot.colors(c.names.length);
    }
    $("#rv-status").replaceChildren(statusSpan(info.status));
    $("#rv-epochs").textContent = info.epochs ? ` / ${info.epochs}` : "";
    $("#rv-what").textContent = [info.data, info.model, info.optim].filter(Boolean).join(" · ") + (info.size ? ` · ${info.size} member(s)` : "");
    const where = root ? `${root}/${info.path}` : info.path;
    const notes = {
      running: `training now (${info.holder || "lock held"}); the curves grow as it evaluates`,
      finished: "finished: summary.json written",
      interrupted: "stopped before the end, with a checkpoint; to continue it: ",
      failed: "stopped before its first evaluation: nothing it trained was kept; ",
    };
    const note = $("#rv-note");
    note.textContent = notes[info.status] || "";
    if (info.status === "interrupted" || info.status === "failed") {
      note.append(el("code", {class: "cmd", text: `trainlab train --resume ${where}`}));
    }
    if (info.status !== "running") figures($("#rv-figures"), info.path, info.figures, info.modified);
    renderMembers();
  }

  function chartFor(key) {
    const c = current;
    if (!c.charts[key]) {
      const m = METRICS.find(x => x[0] === key) || [key, key, false];
      const canvas = el("canvas", {class: "chart", "aria-label": m[1]});
      $("#rv-charts").append(canvas);
      c.charts[key] = TLPlot.lineChart(canvas, {title: m[1], xLabel: "epoch", yLabel: key, logY: m[2]});
      c.charts[key].setSeries(c.names.map((n, i) => ({name: n, color: c.colors[i], points: [], marks: []})));
    }
    return c.charts[key];
  }

  function onMetrics(d) {
    const c = current;
    if (d.reset) {   // metrics.jsonl was rewritten (a resume): start the curves again
      for (const ch of Object.values(c.charts)) ch.setSeries(ch.series.map(s => ({name: s.name, color: s.color, points: [], marks: []})));
      c.last = {};
      c.marked = new Set();
    }
    const batches = {};
    for (const r of d.records) {
      const i = r.member ?? 0;
      const name = memberName(i, r);
      const x = r.epoch ?? r.step;
      for (const [k, v] of Object.entries(r)) {
        if (["member", "member_label", "step", "epoch", "diverged"].includes(k)) continue;
        if (typeof v !== "number" && v !== null) continue;
        ((batches[k] = batches[k] || {})[name] = batches[k][name] || []).push([x, v]);
      }
      c.last[i] = r;
      if (r.diverged && !c.marked.has(i)) {
        c.marked.add(i);
        for (const k of Object.keys(batches)) chartFor(k).mark(name, x, `${name} diverged`);
      }
    }
    const order = k => { const i = METRICS.findIndex(m => m[0] === k); return i < 0 ? 99 : i; };
    for (const [k, byName] of Object.entries(batches).sort((a, b) => order(a[0]) - order(b[0]))) {
      const ch = chartFor(k);
      for (const [name, pts] of Object.entries(byName)) ch.addPoints(name, pts);
    }
    const recs = Object.values(c.last);
    if (recs.length) {
      $("#rv-epoch").textContent = num(Math.max(...recs.map(r => r.epoch ?? 0)), 3);
      $("#rv-step").textContent = Math.max(...recs.map(r => r.step ?? 0));
    }
    renderMembers();
  }

  function renderMembers() {
    const c = current, tb = $("#rv-members tbody");
    tb.textContent = "";
    c.names.forEach((n, i) => {
      const r = c.last[i] || {};
      tb.append(el("tr", {},
        el("td", {}, el("span", {class: "swatch", style: `background:${c.colors[i] || "#999"}`})),
        el("td", {text: n}), el("td", {text: num(r.train_loss)}), el("td", {text: num(r.val_loss)}),
        el("td", {text: num(r.val_acc)}), el("td", {text: num(r.test_acc)}),
        el("td", {class: r.diverged ? "diverged" : "", text: r.diverged ? "diverged" : ""})));
    });
  }

  // ---- a study ----------------------------------------------------------------------------------
  const STATE_COLORS = {COMPLETE: "#1f77b4", PRUNED: "#aaaaaa", FAIL: "#d62728", RUNNING: "#2ca02c", WAITING: "#bbbbbb"};

  function openStudy(path) {
    close();
    current = {kind: "study", path, scatters: {}, bars: null};
    history.replaceState(null, "", `#study=${encodeURIComponent(path)}`);
    $("#view-title").textContent = `study ${path}`;
    $("#study-view").hidden = false;
    $("#sv-charts").textContent = "";
    $("#sv-figures").textContent = "";
    markCurrent();
    current.source = follow(`/api/viewer/study/stream?${qs({path})}`, {study: renderStudy});
  }

  function paramX(space, name, v) {
    const p = space[name] || {};
    if (p.type === "categorical") {
      const i = (p.choices || []).findIndex(c => JSON.stringify(c) === JSON.stringify(v));
      return i;
    }
    return typeof v === "number" ? v : NaN;
  }

  function renderStudy(s) {
    const c = current;
    const counts = s.counts || {};
    $("#view-title").textContent = `study ${s.path}` + (s.study && s.study !== s.name ? ` (${s.study})` : "");
    $("#sv-status").replaceChildren(statusSpan(s.status));
    $("#sv-count").textContent = counts.with_result ?? 0;
    $("#sv-budget").textContent = counts.budget ? ` / ${counts.budget}` + (counts.running ? `, ${counts.running} running` : "") : "";
    $("#sv-metric").textContent = s.metric ? `${s.metric} (${s.direction})` : "";
    $("#sv-best").textContent = s.best ? `best ${num(s.best.value)} (#${s.best.number}: ${Object.entries(s.best.params).map(([k, v]) => `${k}=${typeof v === "number" ? num(v) : JSON.stringify(v)}`).join(", ")})` : "";
    const notes = {running: "trials are being trained; the points arrive as they finish",
                   finished: "finished: every trial of the budget has its result",
                   interrupted: "no trial runs now; running the same trainlab tune command again resumes it",
                   empty: "the study has no trials yet"};
    $("#sv-note").textContent = notes[s.status] || "";
    const space = s.space || {};
    const names = Object.keys(space).length ? Object.keys(space) : Object.keys(((s.trials || [])[0] || {}).params || {});
    const done = (s.trials || []).filter(t => t.value !== null && t.value !== undefined);
    for (const name of names) {
      const p = space[name] || {};
      if (p.type === "fixed") continue;
      if (!c.scatters[name]) {
        const canvas = el("canvas", {class: "chart", "aria-label": `${s.metric} vs ${name}`});
        $("#sv-charts").append(canvas);
        const xl = p.type === "categorical" ? `${name} (${(p.choices || []).map((v, i) => `${i}=${JSON.stringify(v)}`).join(", ")})` : name;
        c.scatters[name] = TLPlot.scatter(canvas, {title: `${s.metric || "value"} vs ${name}`, xLabel: xl, yLabel: s.metric || "value", logX: !!p.log});
      }
      c.scatters[name].setPoints(done.map(t => ({x: paramX(space, name, t.params[name]), y: t.value,
        color: s.best && t.number === s.best.number ? "#ff7f0e" : (STATE_COLORS[t.state] || "#1f77b4"), label: `#${t.number}`})));
    }
    if (s.importance && s.importance.importance) {
      if (!c.bars) {
        const canvas = el("canvas", {class: "chart", "aria-label": "parameter importance"});
        $("#sv-charts").append(canvas);
        c.bars = TLPlot.bars(canvas, {title: `importance (${s.importance.method}, ${s.importance.trials} trials)`, xLabel: "share"});
      }
      c.bars.setData(Object.entries(s.importance.importance).sort((a, b) => b[1] - a[1]).map(([k, v]) => ({label: k, value: v, color: "#1f77b4"})));
    }
    const thead = $("#sv-trials thead"), tbody = $("#sv-trials tbody");
    thead.replaceChildren(el("tr", {}, ...["#", "state", s.metric || "value", ...names, "seconds"].map(h => el("th", {text: h}))));
    tbody.textContent = "";
    for (const t of (s.trials || []).slice().sort((a, b) => b.number - a.number).slice(0, 300)) {
      tbody.append(el("tr", {class: s.best && t.number === s.best.number ? "current" : ""},
        el("td", {text: t.number}), el("td", {text: t.state}), el("td", {text: num(t.value)}),
        ...names.map(n => el("td", {text: typeof t.params[n] === "number" ? num(t.params[n]) : JSON.stringify(t.params[n] ?? null)})),
        el("td", {text: num(t.duration_s, 3)})));
    }
    if (s.status === "finished") figures($("#sv-figures"), s.path, s.figures, s.modified);
  }

  // ---- start --------------------------------------------------------------------------------------
  function fromHash() {
    const h = location.hash.slice(1);
    const [kind, value] = [h.split("=")[0], decodeURIComponent(h.slice(h.indexOf("=") + 1))];
    if (current && current.path === value && current.kind === kind) return;
    if (kind === "run" && value) openRun(value);
    else if (kind === "study" && value) openStudy(value);
  }

  window.addEventListener("hashchange", fromHash);   // a link or the address bar naming another run
  fromHash();      // at once: the list (which opens every study) may take a moment longer
  refreshList();
  setInterval(() => { if (!document.hidden) refreshList(); }, 4000);
})();
