/* trainlab lab: the small DOM helpers every page of the lab shares (lab.js, lessons.js, viewer.js).
 *
 *   TLDom.$(selector)                  -> the first matching element
 *   TLDom.el(tag, attrs, ...children)  -> a new element; attrs: class, text, on<event> handlers, others as
 *                                         attributes
 *   TLDom.api(path, body?)             -> the JSON answer of GET path (or POST body as JSON); a non-2xx
 *                                         answer throws an Error with the server's one-line message
 */
(function () {
  "use strict";
  const $ = sel => document.querySelector(sel);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const c of kids) e.append(c);
    return e;
  };

  async function api(path, body) {
    const opts = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
    const r = await fetch(path, opts);
    let data = {};
    try { data = await r.json(); } catch (e) { data = {error: `${r.status} ${r.statusText}`}; }
    if (!r.ok) throw new Error(data.error || `${r.status}`);
    return data;
  }

  window.TLDom = {$, el, api};
})();
