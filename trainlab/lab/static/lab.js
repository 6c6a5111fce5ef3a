/* trainlab lab: the page. Talks to the server's JSON API and its server-sent event stream
 * (trainlab/lab/_app.py); draws with plot.js (TLPlot). Nothing is stored in the page that the server
 * does not have: a reload reconnects to the run in the URL (#run=NAME) and receives every event again.
 */
(function () {
  "use strict";
  const {$, el, api} = window.TLDom;  // dom.js: the helpers every page shares

  function debounce(fn, ms) { let t = null; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; }

  // ---- compose -------------------------------------------------------------------------------
  const fieldInputs = {};   // key -> input/select
  let schema = null;

  function rangeText(f) {
    const parts = [];
    if (f.low !== null) parts.push(`${f.low_inclusive ? ">=" : ">"} ${f.low}`);
    if (f.high !== null) parts.push(`${f.high_inclusive ? "<=" : "<"} ${f.high}`);
    if (f.choices.length) parts.push(f.choices.join(" | "));
    return parts.join(", ");
  }

  function buildForm(tables) {
    const form = $("#form");
    form.textContent = "";
    for (const t of tables) {
      const det = el("details", {}, el("summary", {text: t.table ? `[${t.table}]` : "top level"}));
      det.open = ["data", "model", "optim", "train"].includes(t.table);
      for (const f of t.fields) {
        let input;
        if (f.choices.length || f.kind === "bool") {
          input = el("select", {"data-key": f.key, id: `f-${f.key}`});
          input.append(el("option", {value: "", text: `(default: ${JSON.stringify(f.default)})`}));
          for (const c of (f.kind === "bool" ? ["true", "false"] : f.choices)) input.append(el("option", {value: f.kind === "bool" ? c : JSON.stringify(c), text: c}));
        } else {
          input = el("input", {"data-key": f.key, id: `f-${f.key}`, placeholder: f.default === null ? "(none)" : JSON.stringify(f.default)});
        }
        const err = el("div", {class: "err"});
        const doc = [f.doc, rangeText(f), f.per_member ? "one value, or a list with one per member" : ""].filter(Boolean).join(" · ");
        const box = el("div", {class: "field" + (f.per_member ? " member" : ""), title: doc},
                       el("label", {for: `f-${f.key}`, text: f.key}), input, el("div", {class: "doc", text: doc}), err);
        const check = debounce(async () => {
          try {
            const r = await api("/api/validate", {key: f.key, value: input.value});
            err.textContent = r.message || "";
            box.classList.toggle("invalid", !!r.message);
          } catch (e) { err.textContent = e.message; }
          preview();
        }, 200);
        input.addEventListener("input", check);
        input.addEventListener("change", check);
        fieldInputs[f.key] = input;
        det.append(box);
      }
      form.append(det);
    }
    for (const i of [0, 1]) {
      const s = $(`#compare-key-${i}`);
      s.textContent = "";
      s.append(el("option", {value: "", text: i === 0 ? "(vary nothing)" : "(no second setting)"}));
      for (const k of schema.compare_keys) s.append(el("option", {value: k, text: k}));
      s.addEventListener("change", preview);
      $(`#compare-values-${i}`).addEventListener("input", preview);
    }
    $("#seeds").addEventListener("input", preview);
  }

  function composeBody() {
    const fields = {};
    for (const [k, input] of Object.entries(fieldInputs)) if (input.value.trim() !== "") fields[k] = input.value;
    const compare = [];
    for (const i of [0, 1]) {
      const key = $(`#compare-key-${i}`).value;
      if (key) compare.push({key, values: $(`#compare-values-${i}`).value});
    }
    return {fields, compare, seeds: parseInt($("#seeds").value || "1", 10)};
  }

  const preview = debounce(async () => {
    const p = $("#preview");
    try {
      const r = await api("/api/compose", composeBody());
      const gib = (r.memory.bytes / 2 ** 30).toFixed(r.memory.bytes < 2 ** 30 ? 3 : 1);
      p.textContent = "";
      p.append(el("div", {text: `${r.size} member(s), about ${gib} GiB to train:`}));
      const labs = el("div", {class: "labels"});
      for (const l of r.labels.slice(0, 64)) labs.append(el("span", {text: l}));
      p.append(labs);
      $("#start-err").textContent = "";
      $("#start").disabled = false;
    } catch (e) {
      p.textContent = "";
      $("#start-err").textContent = e.message;
      $("#start").disabled = true;
    }
  }, 250);

  async function start() {
    $("#start-err").textContent = "";
    try {
      const body = composeBody();
      const name = $("#run-name").value.trim();
      if (name) body.name = name;
      const r = await api("/api/runs", body);
      await refreshRuns();
      watch(r.name);
    } catch (e) { $("#start-err").textContent = e.message; }
  }

  async function exportToml() {
    try {
      const r = await api("/api/compose", composeBody());
      const a = el("a", {href: URL.createObjectURL(new Blob([r.toml], {type: "application/toml"})), download: "lab.toml"});
      document.body.append(a); a.click(); a.remove();
    } catch (e) { $("#start-err").textContent = e.message; }
  }

  async function importToml(file) {
    try {
      const r = await api("/api/toml", {text: await file.text()});
      for (const input of Object.values(fieldInputs)) input.value = "";
      for (const i of [0, 1]) { $(`#compare-key-${i}`).value = ""; $(`#compare-values-${i}`).value = ""; }
      $("#seeds").value = "1";
      for (const [k, v] of Object.entries(r.fields)) {
        const input = fieldInputs[k];
        if (!input) continue;
        if (input.tagName === "SELECT" && ![...input.options].some(o => o.value === v)) input.append(el("option", {value: v, text: v}));
        input.value = v;
      }
      $("#start-err").textContent = "";
      preview();
    } catch (e) { $("#start-err").textContent = e.message; }
  }

  // ---- runs list -------------------------------------------------------------------------------
  let current = null;   // the watched run's state
  async function refreshRuns() {
    let r;
    try { r = await api("/api/runs"); } catch (e) { return; }
    $("#queue-note").textContent = `${r.active} training, ${r.queued} queued (at most ${r.max_parallel} at once)`;
    const tb = $("#run-list tbody");
    tb.textContent = "";
    for (const run of r.runs) {
      const tr = el("tr", {"data-run": run.name, class: current && current.name === run.name ? "current" : "", onclick: () => watch(run.name)},
        el("td", {text: run.name}), el("td", {text: run.status}), el("td", {text: String(run.size || "")}),
        el("td", {text: run.total_steps ? `${run.step}/${run.total_steps}` : String(run.step)}));
      tb.append(tr);
    }
  }

  // ---- watching a run --------------------------------------------------------------------------
  const charts = {};
  function makeCharts() {
    charts.batch = TLPlot.lineChart($("#chart-batch"), {title: "training objective (mean over steps since last point)", xLabel: "step", logY: true});
    charts.valLoss = TLPlot.lineChart($("#chart-val-loss"), {title: "validation loss", xLabel: "step", logY: true});
    charts.valAcc = TLPlot.lineChart($("#chart-val-acc"), {title: "validation accuracy", xLabel: "step", yMin: 0, yMax: 1});
    charts.lr = TLPlot.lineChart($("#chart-lr"), {title: "learning rate", xLabel: "step", logY: true});
    charts.act = TLPlot.histogram($("#hist-act"), {title: "activations"});
    charts.weight = TLPlot.histogram($("#hist-weight"), {title: "weights"});
    charts.grad = TLPlot.lineChart($("#chart-grad"), {title: "gradient norm per layer (vanishing/exploding)", xLabel: "layer (weight layers in order)", logY: true});
    charts.dead = TLPlot.lineChart($("#chart-dead"), {title: "dead (ReLU) / saturated (sigmoid, tanh) fraction per layer", xLabel: "layer (activations in order)", yMin: 0, yMax: 1});
    charts.slider = TLPlot.slider($("#probe-slider"), {label: "probe step", format: i => current && current.probes[i] ? `step ${current.probes[i].step}` : "-", onChange: drawProbe});
  }

  function newState(name) {
    return {name, labels: [], size: 0, colors: [], probes: [], diverged: {}, lr: [], lastAcc: [], steerable: [], status: "",
            events: 0, seq: 0, lastStep: 0, t0: performance.now(), stepsSeen: 0, rate: "", updates: 0};
  }

  function memberNames(labels) {
    const seen = {};
    for (const l of labels) seen[l] = (seen[l] || 0) + 1;
    return labels.map((l, i) => seen[l] > 1 ? `${l} #${i}` : l);
  }

  let source = null;
  function watch(name) {
    if (source) { source.close(); source = null; }
    current = newState(name);
    location.hash = `run=${encodeURIComponent(name)}`;
    $("#watch").hidden = false;
    $("#watch-title").textContent = name;
    $("#watch-err").textContent = "";
    $("#run-files").hidden = false;
    $("#run-files").href = `/api/runs/${encodeURIComponent(name)}/files/config.toml`;
    for (const k of ["batch", "valLoss", "valAcc", "lr", "grad", "dead"]) charts[k].setSeries([]);
    charts.act.setData([]); charts.weight.setData([]);
    $("#members tbody").textContent = "";
    $("#steer-log").textContent = "";
    $("#run-message").textContent = "";
    for (const tr of document.querySelectorAll("#run-list tbody tr")) tr.classList.toggle("current", tr.dataset.run === name);
    source = new EventSource(`/api/runs/${encodeURIComponent(name)}/events`);
    const mine = current;
    source.onmessage = m => { if (current === mine) onEvent(JSON.parse(m.data)); };
    source.onerror = () => { if (current === mine) $("#run-message").textContent = "connection lost; reconnecting..."; };
    source.onopen = () => { if (current === mine && $("#run-message").textContent.startsWith("connection")) $("#run-message").textContent = ""; };
  }

  function seriesFor(chart, i) {
    return {name: current.names[i], color: current.colors[i], points: [], marks: []};
  }

  function reset(ev) {
    const c = current;
    c.labels = ev.labels || []; c.size = ev.size || c.labels.length;
    c.names = memberNames(c.labels);
    c.colors = TLPlot.colors(c.size);
    c.total = ev.total_steps; c.stepsPerEpoch = ev.steps_per_epoch;
    c.steerable = ev.steerable || [];
    c.lr = ev.lr || [];
    c.diverged = {};
    for (const k of ["batch", "valLoss", "valAcc", "lr"]) charts[k].setSeries(c.labels.map((_, i) => seriesFor(charts[k], i)));
    for (const r of ev.records || []) addRecord(r);
    c.probes = (ev.probes || []).filter(p => p.step <= (ev.step || 0) || !ev.from_disk);
    markDiverged(ev.diverged || {});
    const sel = $("#steer-key");
    sel.textContent = "";
    for (const k of c.steerable) sel.append(el("option", {value: k, text: k}));
    buildMembers();
    for (const s of ev.steering || []) logSteer(s);
    c.lastStep = ev.step || 0;
    $("#run-step").textContent = String(c.lastStep);
    $("#run-total").textContent = c.total ? ` / ${c.total}` : "";
    updateProbes(true);
  }

  function addRecord(r) {
    const add = (chart, key) => {
      const v = r[key];
      if (!Array.isArray(v)) return;
      v.forEach((y, i) => { if (chart.series[i]) chart.series[i].points.push([r.step, y]); });
      chart.request();
    };
    add(charts.valLoss, "val_loss");
    add(charts.valAcc, "val_acc");
    if (Array.isArray(r.val_acc)) current.lastAcc = r.val_acc;
    if (Array.isArray(r.lr)) current.lr = r.lr;
  }

  function markDiverged(div) {
    for (const [m, d] of Object.entries(div)) {
      if (current.diverged[m]) continue;
      current.diverged[m] = d;
      const i = +m;
      for (const k of ["batch", "valLoss"]) if (charts[k].series[i]) charts[k].mark(charts[k].series[i].name, d.step, "diverged");
    }
    updateMembers();
  }

  function buildMembers() {
    const tb = $("#members tbody");
    tb.textContent = "";
    current.labels.forEach((l, i) => {
      const input = el("input", {class: "steer-value", "aria-label": `new value for ${l}`, placeholder: "new value"});
      const err = el("span", {class: "err"});
      const set = el("button", {class: "steer-set", text: "Set", onclick: async () => {
        err.textContent = "";
        try { await api(`/api/runs/${encodeURIComponent(current.name)}/set`, {member: i, key: $("#steer-key").value || "optim.lr", value: input.value}); input.value = ""; }
        catch (e) { err.textContent = e.message; }
      }});
      const fork = el("button", {class: "fork", text: "Fork", title: "a new run continuing this member alone, from its current weights", onclick: async () => {
        err.textContent = "";
        try { const r = await api(`/api/runs/${encodeURIComponent(current.name)}/fork`, {member: i}); err.textContent = `forking into ${r.name}`; }
        catch (e) { err.textContent = e.message; }
      }});
      tb.append(el("tr", {"data-member": String(i)},
        el("td", {}, el("span", {class: "swatch", style: `background:${current.colors[i]}`})),
        el("td", {class: "label", text: current.names[i]}), el("td", {class: "lr"}), el("td", {class: "acc"}), el("td", {class: "state"}),
        el("td", {}, input, set), el("td", {}, fork, err)));
    });
    updateMembers();
  }

  function fmt(v) { return v === null || v === undefined ? "-" : v === 0 ? "0" : (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e4 ? String(+v.toPrecision(4)) : v.toExponential(2)); }

  function updateMembers() {
    const rows = document.querySelectorAll("#members tbody tr");
    rows.forEach((tr, i) => {
      tr.querySelector(".lr").textContent = fmt(current.lr[i]);
      tr.querySelector(".acc").textContent = current.lastAcc[i] === undefined ? "-" : fmt(current.lastAcc[i]);
      const d = current.diverged[i];
      const st = tr.querySelector(".state");
      st.textContent = d ? `diverged at step ${d.step}` : "";
      st.className = "state" + (d ? " diverged" : "");
    });
  }

  function logSteer(s) {
    const line = el("div", {text: `step ${s.step}: ${current.names[s.member] || "member " + s.member} ${s.key} ${fmt(s.old)} -> ${fmt(s.new)}`});
    $("#steer-log").append(line);
  }

  function setStatus(state, message) {
    current.status = state;
    $("#run-status").textContent = state;
    if (message !== undefined) $("#run-message").textContent = message || "";
    const active = ["starting", "running", "paused", "stopping"].includes(state);
    $("#btn-pause").disabled = !(state === "running");
    $("#btn-resume").disabled = !(state === "paused");
    $("#btn-stop").disabled = !active;
    $("#btn-restart").disabled = state !== "interrupted" && state !== "failed";
    for (const b of document.querySelectorAll("#members button")) b.disabled = !active;
  }

  function onEvent(ev) {
    const c = current;
    c.events++; c.seq = ev.seq;
    switch (ev.type) {
      case "begin": reset(ev); break;
      case "progress": {
        ev.loss.forEach((y, i) => { if (charts.batch.series[i]) charts.batch.series[i].points.push([ev.step, y]); });
        charts.batch.request();
        c.lr = ev.lr || c.lr;
        (ev.lr || []).forEach((y, i) => { if (charts.lr.series[i]) charts.lr.series[i].points.push([ev.step, y]); });
        charts.lr.request();
        const now = performance.now();
        if (c.prevProgress) {
          const dt = (now - c.prevProgress.t) / 1000, ds = ev.step - c.prevProgress.step;
          if (dt > 0 && ds >= 0) c.rate = `${(ds / dt).toFixed(1)} steps/s`;
        }
        c.prevProgress = {t: now, step: ev.step};
        c.updates++;
        c.lastStep = ev.step;
        $("#run-step").textContent = String(ev.step);
        $("#run-rate").textContent = c.rate;
        if (c.stepsPerEpoch) $("#run-epoch").textContent = `epoch ${(ev.step / c.stepsPerEpoch).toFixed(2)}`;
        updateMembers();
        break;
      }
      case "eval": addRecord(ev.record); markDiverged(ev.diverged || {}); c.lastStep = ev.record.step; $("#run-step").textContent = String(ev.record.step); break;
      case "diverged": markDiverged(ev.diverged || {}); break;
      case "probe": c.probes.push(ev.record); updateProbes(false); break;
      case "steer": logSteer(ev); c.lr = c.lr.slice(); if (ev.key === "optim.lr") c.lr[ev.member] = ev.new; updateMembers(); break;
      case "forked": $("#run-message").textContent = `member ${c.names[ev.member]} forked at step ${ev.step} into ${ev.dest.split("/").pop()}`; refreshRuns(); break;
      case "error": $("#watch-err").textContent = ev.message; break;
      case "state": setStatus(ev.state, ev.message); if (ev.summary) $("#run-message").textContent = `finished: ${ev.summary.steps} steps in ${fmt(ev.summary.seconds)} s`; refreshRuns(); break;
    }
  }

  // ---- probes ------------------------------------------------------------------------------------
  function updateProbes(rebuild) {
    const c = current;
    $("#probe-note").textContent = c.probes.length ? `${c.probes.length} probe record(s)` : "(no probe records yet)";
    if (!c.probes.length) { charts.slider.setRange(0, 0); return; }
    const sel = $("#probe-layer");
    const layers = c.probes[c.probes.length - 1].layers || [];
    const want = layers.filter(l => l.act || l.weight).map(l => `${l.path} ${l.type}`);
    if (rebuild || sel.options.length !== want.length) {
      const keep = sel.value;
      sel.textContent = "";
      for (const w of want) sel.append(el("option", {value: w.split(" ")[0], text: w}));
      if (want.some(w => w.split(" ")[0] === keep)) sel.value = keep;
    }
    charts.slider.setRange(0, c.probes.length - 1);
    if (rebuild) drawProbe(charts.slider.value);
  }

  function drawProbe(idx) {
    const c = current;
    if (!c || !c.probes.length) return;
    const rec = c.probes[Math.min(Math.max(idx, 0), c.probes.length - 1)];
    const path = $("#probe-layer").value;
    const layers = rec.layers || [];
    // the chosen layer's activations (or the next activation after it: Linear -> its ReLU) and its
    // weights (or those of the last weight layer before it: ReLU -> its Linear)
    let at = layers.findIndex(l => l.path === path);
    if (at < 0) at = 0;
    const actLayer = layers.slice(at).find(l => l.act);
    const wLayer = layers.slice(0, at + 1).reverse().find(l => l.weight);
    const perMember = (entry) => (entry && entry.hist ? entry.hist.map((h, i) => ({name: c.names[i], color: c.colors[i], edges: entry.edges, counts: h})) : []);
    const actInfo = actLayer ? ` (${["dead", "saturated", "inactive"].filter(k => actLayer.act[k]).map(k => `${k} ${actLayer.act[k].map(fmt).join(" / ")}`).join("; ")})` : "";
    charts.act.opts.title = actLayer ? `activations: ${actLayer.path} ${actLayer.type}, step ${rec.step}${actInfo}` : "activations (none after this layer)";
    charts.act.setData(perMember(actLayer && actLayer.act));
    charts.weight.opts.title = wLayer ? `weights: ${wLayer.path} ${wLayer.type}, step ${rec.step}` : "weights (none before this layer)";
    charts.weight.setData(perMember(wLayer && wLayer.weight));
    const gl = layers.filter(l => l.grad && l.grad.norm);
    charts.grad.opts.title = `gradient norm per layer at step ${rec.step}` + (gl.length ? "" : " (none before the first step)");
    charts.grad.setSeries(c.names.map((n, i) => ({name: n, color: c.colors[i], points: gl.map((l, k) => [k, l.grad.norm[i]])})));
    const al = layers.filter(l => l.act && (l.act.dead || l.act.saturated));
    charts.dead.setSeries(c.names.map((n, i) => ({name: n, color: c.colors[i], points: al.map((l, k) => [k, (l.act.dead || l.act.saturated)[i]])})));
    const bn = layers.filter(l => l.bn);
    const box = $("#bn-table");
    box.textContent = "";
    if (bn.length) {
      const t = el("table", {}, el("thead", {}, el("tr", {}, ...["BN layer", "member", "batch mean", "batch var", "running mean", "running var"].map(h => el("th", {text: h})))));
      const tb = el("tbody");
      for (const l of bn) c.names.forEach((n, i) => tb.append(el("tr", {}, el("td", {text: l.path}), el("td", {text: n}),
        ...["batch_mean", "batch_var", "running_mean", "running_var"].map(k => el("td", {text: `${fmt(l.bn[k].mean[i])} ± ${fmt(l.bn[k].spread[i])}`})))));
      t.append(tb);
      box.append(el("h3", {text: `BatchNorm statistics at step ${rec.step} (mean over features ± spread)`}), t);
    }
    for (const k of ["batch", "valLoss", "valAcc", "lr"]) charts[k].setCursor(charts.slider.follow ? null : rec.step);
  }

  // ---- buttons, start-up ---------------------------------------------------------------------------
  function control(cmd) {
    return async () => {
      $("#watch-err").textContent = "";
      try { await api(`/api/runs/${encodeURIComponent(current.name)}/${cmd}`, {}); }
      catch (e) { $("#watch-err").textContent = e.message; }
    };
  }

  async function init() {
    makeCharts();
    $("#start").addEventListener("click", start);
    $("#export").addEventListener("click", exportToml);
    $("#import").addEventListener("change", e => { if (e.target.files[0]) importToml(e.target.files[0]); e.target.value = ""; });
    $("#btn-pause").addEventListener("click", control("pause"));
    $("#btn-resume").addEventListener("click", control("resume"));
    $("#btn-stop").addEventListener("click", control("stop"));
    $("#btn-restart").addEventListener("click", control("restart"));
    $("#probe-layer").addEventListener("change", () => drawProbe(charts.slider.value));
    schema = await api("/api/schema");
    $("#server-note").textContent = `runs under ${schema.root}`;
    for (const link of schema.links || []) $("#nav").append(el("a", {href: link.href, text: link.title}));
    buildForm(schema.tables);
    preview();
    await refreshRuns();
    setInterval(refreshRuns, 1500);
    const m = /run=([^&]+)/.exec(location.hash);
    if (m) watch(decodeURIComponent(m[1]));
  }

  // for tests and the curious: what the page has drawn so far
  window.TL = {
    counts: () => current ? {
      batch: charts.batch.pointCount(), valLoss: charts.valLoss.pointCount(), valAcc: charts.valAcc.pointCount(),
      probes: current.probes.length, act: charts.act.pointCount(), weight: charts.weight.pointCount(), updates: current.updates,
      status: current.status, labels: current.names, step: current.lastStep, events: current.events, diverged: Object.keys(current.diverged).length,
    } : null,
    watch,
  };
  init().catch(e => { document.body.prepend(el("div", {class: "err", text: `the lab could not start: ${e.message}`})); });
})();
