/* trainlab lab: plot.js -- a small canvas plotting module (no dependencies, no CDN).
 *
 * Loaded as a classic script (<script src="/static/plot.js">); it defines one global, `TLPlot`.
 * Every chart draws into a <canvas> you give it, sized to the canvas's CSS box (sharp on HiDPI
 * screens) and redrawn when the window resizes. Colours follow trainlab.labels.member_colors:
 * tab10 up to 10 members, viridis beyond, so member i has the same colour as in the PNG figures.
 *
 * API
 * ---
 * TLPlot.colors(n) -> ["rgb(...)", ...]          colour of member i of n (tab10 / viridis)
 *
 * const c = TLPlot.lineChart(canvas, {title, xLabel, yLabel, logY: false, yMin, yMax})
 *   c.setSeries([{name, color, points: [[x, y], ...], dashed: false, marks: [{x, label}]}])
 *                                 replace all series (y = null/NaN/Infinity leaves a gap)
 *   c.addPoints(name, [[x, y], ...])   append to one series (created if new, next colour)
 *   c.mark(name, x, label)         a marker (a red cross on the curve, and its label) at x,
 *                                  e.g. where a member diverged
 *   c.setCursor(x | null)          a vertical line at x (e.g. the time slider's step)
 *   c.pointCount() -> total number of points over all series
 *   c.draw()                       redraw now (the set/add calls redraw on the next animation frame)
 *   c.series                        the series objects (read them, do not edit)
 *
 * const h = TLPlot.histogram(canvas, {title, xLabel, logY: false})
 *   h.setData([{name, color, edges: [e0, ..., eK], counts: [c1, ..., cK]}])
 *                                  overlaid outlines, one per member; counts normalised per member
 *   h.draw()
 *
 * const s = TLPlot.scatter(canvas, {title, xLabel, yLabel, logX: false, logY: false})
 *   s.setPoints([{x, y, color, label}])     e.g. a study's trials (objective vs a parameter)
 *
 * const b = TLPlot.bars(canvas, {title, xLabel})
 *   b.setData([{label, value, color}])      horizontal bars, e.g. parameter importances
 *
 * const t = TLPlot.slider(container, {label, min: 0, max: 0, value: 0, format: v => String(v),
 *                                     onChange: v => {}, follow: true})
 *   A time slider: an <input type=range> plus its value. t.setRange(min, max) extends it; while
 *   `follow` (the thumb is at the right end), it moves to the new max. t.value, t.setValue(v).
 *
 * Nothing here talks to the server: lab.js and the viewer pages feed the charts.
 */
(function (global) {
  "use strict";

  const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
  // viridis at 9 stops, interpolated linearly (matplotlib's viridis, sampled)
  const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                   [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];

  function viridis(t) {
    const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
    const c = VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  function colors(n) {
    if (n <= 10) return TAB10.slice(0, n);
    const out = [];
    for (let i = 0; i < n; i++) out.push(viridis(i / (n - 1)));
    return out;
  }

  function finite(v) { return typeof v === "number" && isFinite(v); }

  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    const span = hi - lo, step0 = span / Math.max(n, 1);
    const mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const err = step0 / mag;
    const step = (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1) * mag;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return out;
  }

  function fmt(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e4 || a < 1e-3) return v.toExponential(0);
    return String(+v.toPrecision(3));
  }

  /* The common part: a canvas sized to its box, an animation-frame redraw, axes. */
  class Base {
    constructor(canvas, opts) {
      this.canvas = canvas;
      this.opts = Object.assign({title: "", xLabel: "", yLabel: ""}, opts || {});
      this._pending = false;
      this._onResize = () => this.request();
      global.addEventListener("resize", this._onResize);
    }

    request() {
      if (this._pending) return;
      this._pending = true;
      const raf = global.requestAnimationFrame || (f => setTimeout(f, 16));
      raf(() => { this._pending = false; this.draw(); });
    }

    _context() {
      const c = this.canvas, dpr = global.devicePixelRatio || 1;
      const w = Math.max(c.clientWidth || c.width || 300, 50), h = Math.max(c.clientHeight || c.height || 200, 50);
      if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
        c.width = Math.round(w * dpr);
        c.height = Math.round(h * dpr);
      }
      const g = c.getContext("2d");
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, w, h);
      g.font = "11px sans-serif";
      return {g, w, h};
    }

    /* Axes in the box (l, t, r, b); returns the maps from data to pixels. */
    _axes(g, w, h, xr, yr, opts) {
      const L = 52, R = 10, T = opts.title ? 20 : 8, B = opts.xLabel ? 34 : 22;
      const px = {l: L, r: w - R, t: T, b: h - B};
      const logY = !!opts.logY, logX = !!opts.logX;
      const tx = v => logX ? Math.log10(v) : v, ty = v => logY ? Math.log10(v) : v;
      let [x0, x1] = xr.map(tx), [y0, y1] = yr.map(ty);
      if (!(x1 > x0)) { x1 = x0 + 1; }
      if (!(y1 > y0)) { const m = Math.abs(y0) * 0.05 || 0.5; y0 -= m; y1 += m; }
      const X = v => px.l + (tx(v) - x0) / (x1 - x0) * (px.r - px.l);
      const Y = v => px.b - (ty(v) - y0) / (y1 - y0) * (px.b - px.t);
      g.strokeStyle = "#ccc"; g.fillStyle = "#555"; g.lineWidth = 1;
      g.textAlign = "right"; g.textBaseline = "middle";
      for (const v of niceTicks(y0, y1, 4)) {
        const y = px.b - (v - y0) / (y1 - y0) * (px.b - px.t);
        g.beginPath(); g.moveTo(px.l, y); g.lineTo(px.r, y); g.stroke();
        g.fillText(logY ? fmt(Math.pow(10, v)) : fmt(v), px.l - 4, y);
      }
      g.textAlign = "center"; g.textBaseline = "top";
      for (const v of niceTicks(x0, x1, 5)) {
        const x = px.l + (v - x0) / (x1 - x0) * (px.r - px.l);
        g.fillText(logX ? fmt(Math.pow(10, v)) : fmt(v), x, px.b + 4);
      }
      g.strokeStyle = "#888";
      g.strokeRect(px.l, px.t, px.r - px.l, px.b - px.t);
      g.fillStyle = "#222";
      if (opts.title) { g.textAlign = "left"; g.textBaseline = "top"; g.font = "bold 12px sans-serif"; g.fillText(opts.title, px.l, 3); g.font = "11px sans-serif"; }
      if (opts.xLabel) { g.textAlign = "center"; g.textBaseline = "bottom"; g.fillText(opts.xLabel, (px.l + px.r) / 2, h - 2); }
      if (opts.yLabel) {
        g.save(); g.translate(10, (px.t + px.b) / 2); g.rotate(-Math.PI / 2);
        g.textAlign = "center"; g.textBaseline = "middle"; g.fillText(opts.yLabel, 0, 0); g.restore();
      }
      return {X, Y, px};
    }

    _legend(g, px, items) {
      if (!items.length) return;
      const maxShown = 12;
      const shown = items.slice(0, maxShown);
      const lw = Math.min(220, Math.max(...shown.map(it => g.measureText(it.name).width)) + 26);
      const lh = 14, x = px.r - lw - 4, y = px.t + 4;
      const rows = shown.length + (items.length > maxShown ? 1 : 0);
      g.fillStyle = "rgba(255,255,255,0.85)"; g.fillRect(x, y, lw, rows * lh + 4);
      g.textAlign = "left"; g.textBaseline = "middle";
      shown.forEach((it, i) => {
        g.strokeStyle = it.color; g.lineWidth = 2; g.setLineDash(it.dashed ? [4, 3] : []);
        g.beginPath(); g.moveTo(x + 4, y + 9 + i * lh); g.lineTo(x + 18, y + 9 + i * lh); g.stroke();
        g.setLineDash([]);
        g.fillStyle = "#222"; g.fillText(it.name, x + 22, y + 9 + i * lh, lw - 26);
      });
      if (items.length > maxShown) { g.fillStyle = "#555"; g.fillText(`+${items.length - maxShown} more`, x + 22, y + 9 + shown.length * lh); }
    }

    destroy() { global.removeEventListener("resize", this._onResize); }
  }

  class LineChart extends Base {
    constructor(canvas, opts) { super(canvas, opts); this.series = []; this.cursor = null; }

    _get(name) {
      let s = this.series.find(s => s.name === name);
      if (!s) {
        s = {name, color: TAB10[this.series.length % 10], points: [], marks: [], dashed: false};
        this.series.push(s);
      }
      return s;
    }

    setSeries(list) {
      this.series = list.map((s, i) => ({name: s.name, color: s.color || TAB10[i % 10], points: (s.points || []).slice(),
                                         marks: (s.marks || []).slice(), dashed: !!s.dashed}));
      this.request();
    }

    addPoints(name, pts) { const s = this._get(name); for (const p of pts) s.points.push(p); this.request(); }

    mark(name, x, label) { this._get(name).marks.push({x, label: label || ""}); this.request(); }

    setCursor(x) { this.cursor = x; this.request(); }

    pointCount() { return this.series.reduce((n, s) => n + s.points.length, 0); }

    _ranges() {
      let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
      const logY = !!this.opts.logY;
      for (const s of this.series) for (const [x, y] of s.points) {
        if (!finite(x) || !finite(y) || (logY && y <= 0)) continue;
        if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      }
      if (x0 === Infinity) { x0 = 0; x1 = 1; y0 = logY ? 0.1 : 0; y1 = 1; }
      // 4% headroom, so a flat curve at the extreme is not hidden under the frame
      if (logY) { const f = Math.pow(10, Math.max(Math.log10(y1 / y0), 0.02) * 0.04); y0 /= f; y1 *= f; }
      else { const m = Math.max(y1 - y0, Math.abs(y1) * 0.01, 1e-12) * 0.04; y0 -= m; y1 += m; }
      if (this.opts.yMin !== undefined) y0 = this.opts.yMin;
      if (this.opts.yMax !== undefined) y1 = this.opts.yMax;
      return [[x0, x1], [y0, y1]];
    }

    draw() {
      const {g, w, h} = this._context();
      const [xr, yr] = this._ranges();
      const {X, Y, px} = this._axes(g, w, h, xr, yr, this.opts);
      const logY = !!this.opts.logY;
      g.save(); g.beginPath(); g.rect(px.l, px.t, px.r - px.l, px.b - px.t); g.clip();
      for (const s of this.series) {
        g.strokeStyle = s.color; g.lineWidth = 1.6; g.setLineDash(s.dashed ? [5, 3] : []);
        g.beginPath();
        let pen = false;
        for (const [x, y] of s.points) {
          if (!finite(x) || !finite(y) || (logY && y <= 0)) { pen = false; continue; }
          const yy = Math.min(Math.max(y, yr[0]), yr[1]);
          if (pen) g.lineTo(X(x), Y(yy)); else { g.moveTo(X(x), Y(yy)); pen = true; }
        }
        g.stroke(); g.setLineDash([]);
        if (s.points.length === 1 && finite(s.points[0][1])) {
          g.fillStyle = s.color; g.beginPath(); g.arc(X(s.points[0][0]), Y(s.points[0][1]), 2.5, 0, 7); g.fill();
        }
      }
      // markers (divergence): a red cross at the top of the plot at x, and the label
      for (const s of this.series) for (const m of s.marks) {
        const x = X(m.x);
        g.strokeStyle = "#d00"; g.lineWidth = 2;
        g.beginPath(); g.moveTo(x - 5, px.t + 3); g.lineTo(x + 5, px.t + 13); g.moveTo(x + 5, px.t + 3); g.lineTo(x - 5, px.t + 13); g.stroke();
        g.setLineDash([2, 3]); g.strokeStyle = s.color; g.lineWidth = 1;
        g.beginPath(); g.moveTo(x, px.t + 14); g.lineTo(x, px.b); g.stroke(); g.setLineDash([]);
        if (m.label) { g.fillStyle = "#d00"; g.textAlign = "left"; g.textBaseline = "top"; g.fillText(m.label, x + 6, px.t + 3); }
      }
      if (this.cursor !== null && finite(this.cursor)) {
        g.strokeStyle = "#000"; g.lineWidth = 1; g.setLineDash([3, 3]);
        g.beginPath(); g.moveTo(X(this.cursor), px.t); g.lineTo(X(this.cursor), px.b); g.stroke(); g.setLineDash([]);
      }
      g.restore();
      this._legend(g, px, this.series);
    }
  }

  class Histogram extends Base {
    constructor(canvas, opts) { super(canvas, opts); this.data = []; }

    setData(list) { this.data = list || []; this.request(); }

    pointCount() { return this.data.reduce((n, d) => n + (d.counts ? d.counts.length : 0), 0); }

    draw() {
      const {g, w, h} = this._context();
      let x0 = Infinity, x1 = -Infinity, y1 = 0;
      const norm = this.data.map(d => {
        const tot = (d.counts || []).reduce((a, b) => a + (finite(b) ? b : 0), 0) || 1;
        return (d.counts || []).map(c => (finite(c) ? c : 0) / tot);
      });
      this.data.forEach((d, i) => {
        if (!d.edges || d.edges.length < 2) return;
        x0 = Math.min(x0, d.edges[0]); x1 = Math.max(x1, d.edges[d.edges.length - 1]);
        for (const v of norm[i]) y1 = Math.max(y1, v);
      });
      if (x0 === Infinity) { x0 = 0; x1 = 1; y1 = 1; }
      const {X, Y, px} = this._axes(g, w, h, [x0, x1], [0, y1 * 1.05 || 1], Object.assign({}, this.opts, {yLabel: this.opts.yLabel || "fraction"}));
      g.save(); g.beginPath(); g.rect(px.l, px.t, px.r - px.l, px.b - px.t); g.clip();
      this.data.forEach((d, i) => {
        if (!d.edges || d.edges.length < 2) return;
        const color = d.color || TAB10[i % 10];
        g.strokeStyle = color; g.lineWidth = 1.5; g.beginPath();
        g.moveTo(X(d.edges[0]), Y(0));
        norm[i].forEach((v, k) => { g.lineTo(X(d.edges[k]), Y(v)); g.lineTo(X(d.edges[k + 1]), Y(v)); });
        g.lineTo(X(d.edges[d.edges.length - 1]), Y(0)); g.stroke();
        if (this.data.length <= 3) { g.globalAlpha = 0.12; g.fillStyle = color; g.fill(); g.globalAlpha = 1; }
      });
      g.restore();
      this._legend(g, px, this.data.map((d, i) => ({name: d.name || "", color: d.color || TAB10[i % 10]})));
    }
  }

  class Scatter extends Base {
    constructor(canvas, opts) { super(canvas, opts); this.points = []; }

    setPoints(list) { this.points = list || []; this.request(); }

    pointCount() { return this.points.length; }

    draw() {
      const {g, w, h} = this._context();
      const ok = this.points.filter(p => finite(p.x) && finite(p.y) && (!this.opts.logX || p.x > 0) && (!this.opts.logY || p.y > 0));
      const xs = ok.map(p => p.x), ys = ok.map(p => p.y);
      const xr = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
      const yr = ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
      const {X, Y} = this._axes(g, w, h, xr, yr, this.opts);
      for (const p of ok) {
        g.fillStyle = p.color || TAB10[0]; g.globalAlpha = 0.8;
        g.beginPath(); g.arc(X(p.x), Y(p.y), 3.5, 0, 7); g.fill(); g.globalAlpha = 1;
      }
    }
  }

  class Bars extends Base {
    constructor(canvas, opts) { super(canvas, opts); this.data = []; }

    setData(list) { this.data = list || []; this.request(); }

    draw() {
      const {g, w, h} = this._context();
      const T = this.opts.title ? 22 : 6, L = Math.min(160, Math.max(60, ...this.data.map(d => g.measureText(d.label).width + 10)));
      if (this.opts.title) { g.fillStyle = "#222"; g.font = "bold 12px sans-serif"; g.textAlign = "left"; g.textBaseline = "top"; g.fillText(this.opts.title, 4, 3); g.font = "11px sans-serif"; }
      const vmax = Math.max(1e-12, ...this.data.map(d => finite(d.value) ? d.value : 0));
      const rowh = Math.min(22, (h - T - 4) / Math.max(this.data.length, 1));
      this.data.forEach((d, i) => {
        const y = T + i * rowh, bw = (finite(d.value) ? d.value : 0) / vmax * (w - L - 50);
        g.fillStyle = d.color || TAB10[0]; g.fillRect(L, y + 2, Math.max(bw, 1), rowh - 4);
        g.fillStyle = "#222"; g.textAlign = "right"; g.textBaseline = "middle"; g.fillText(d.label, L - 4, y + rowh / 2, L - 6);
        g.textAlign = "left"; g.fillText(finite(d.value) ? fmt(d.value) : "-", L + bw + 4, y + rowh / 2);
      });
    }
  }

  class Slider {
    constructor(container, opts) {
      this.opts = Object.assign({label: "", min: 0, max: 0, value: 0, format: v => String(v), onChange: () => {}, follow: true}, opts || {});
      this.follow = this.opts.follow;
      const wrap = document.createElement("div");
      wrap.className = "tl-slider";
      const lab = document.createElement("label");
      lab.textContent = this.opts.label + " ";
      this.input = document.createElement("input");
      this.input.type = "range"; this.input.step = "1";
      this.input.min = String(this.opts.min); this.input.max = String(this.opts.max); this.input.value = String(this.opts.value);
      this.out = document.createElement("output");
      lab.appendChild(this.input); wrap.appendChild(lab); wrap.appendChild(this.out);
      container.appendChild(wrap);
      this.element = wrap;
      this.input.addEventListener("input", () => {
        this.follow = +this.input.value >= +this.input.max;
        this._show(); this.opts.onChange(this.value);
      });
      this._show();
    }

    get value() { return +this.input.value; }

    setValue(v) { this.input.value = String(v); this.follow = +this.input.value >= +this.input.max; this._show(); this.opts.onChange(this.value); }

    setRange(min, max) {
      const changed = +this.input.max !== max || +this.input.min !== min;
      this.input.min = String(min); this.input.max = String(max);
      if (this.follow && changed) { this.input.value = String(max); this._show(); this.opts.onChange(this.value); }
      else this._show();
    }

    _show() { this.out.textContent = this.opts.format(this.value); }
  }

  global.TLPlot = {
    colors,
    lineChart: (canvas, opts) => new LineChart(canvas, opts),
    histogram: (canvas, opts) => new Histogram(canvas, opts),
    scatter: (canvas, opts) => new Scatter(canvas, opts),
    bars: (canvas, opts) => new Bars(canvas, opts),
    slider: (container, opts) => new Slider(container, opts),
  };
})(typeof window !== "undefined" ? window : globalThis);
