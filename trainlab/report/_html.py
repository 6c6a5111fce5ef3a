"""report.html: one self-contained page (inline CSS, figures as base64 PNG, no script)."""

from __future__ import annotations

import base64
import html
import io
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn
    from matplotlib.figure import Figure

__all__ = ["figure_png", "render_html"]

_CSS = """
:root { --fg: #1d2327; --muted: #5b6770; --line: #d9dee3; --ok: #17743a; --okbg: #e3f4e8; --bad: #a4260f;
  --badbg: #fbe6e1; --na: #6b5a00; --nabg: #fbf3cf; --accent: #1f5f99; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--fg); background: #fff; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto,
  "Noto Sans", "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.6rem; margin: .5rem 0; }
h2 { font-size: 1.3rem; margin: 0 0 .4rem; }
a { color: var(--accent); }
.meta { color: var(--muted); font-size: .9rem; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
th, td { border-bottom: 1px solid var(--line); padding: .45rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f6f8; font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: 1rem; font-size: .82rem; font-weight: 600;
  white-space: nowrap; }
.held, .pass { color: var(--ok); background: var(--okbg); }
.failed, .fail, .error { color: var(--bad); background: var(--badbg); }
.na { color: var(--na); background: var(--nabg); }
section.exp { border-top: 2px solid var(--line); padding: 1.2rem 0 .6rem; }
blockquote { margin: .4rem 0 .8rem; padding: .4rem .8rem; border-left: 4px solid var(--accent); background: #f5f8fb; }
figure { margin: 1rem 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { font-size: .92rem; color: #333; margin-top: .35rem; }
details { margin: .5rem 0; }
summary { cursor: pointer; color: var(--accent); }
pre { background: #f4f6f8; padding: .6rem; overflow-x: auto; font-size: .8rem; }
.explain { color: #333; font-size: .88rem; }
a.more { white-space: nowrap; }
@media (max-width: 640px) {
  body { font-size: 15px; }
  main { padding: .6rem; }
  table.summary thead { display: none; }
  table.summary, table.summary tbody, table.summary tr, table.summary td { display: block; width: 100%; }
  table.summary tr { border: 1px solid var(--line); border-radius: 6px; margin: 0 0 .6rem; padding: .3rem; }
  table.summary td { border: 0; padding: .2rem .4rem; }
  table.checks td.explain { min-width: 14rem; }
}
"""


def figure_png(fig: Figure, *, dpi: int = 100) -> tuple[str, int, int]:
    """Encode a matplotlib figure as base64 PNG; returns (data, width px, height px) and closes the figure."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    plt.close(fig)
    data = buf.getvalue()
    # PNG header: width and height are big-endian at bytes 16..24
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return base64.b64encode(data).decode("ascii"), width, height


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.3g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


_STATUS_CLASS = {"held": "held", "did not hold": "failed", "not available": "na", "error": "error"}


def _status_badge(status: str) -> str:
    return f'<span class="badge {_STATUS_CLASS[status]}">{_e(status)}</span>'


def _threshold(check: dict[str, Any]) -> str:
    thr, op, unit = check["threshold"], check["op"], check.get("unit", "")
    if op == "between":
        return f"between {_fmt(thr[0])} and {_fmt(thr[1])}{unit}"
    return f"{op} {_fmt(thr)}{unit}"


def render_html(results: dict[str, Any], figures: dict[str, list[dict[str, Any]]]) -> str:
    """The page for ``results`` (the results.json object); ``figures[name]`` holds
    ``{"title", "caption", "png", "width", "height"}`` per figure of that experiment."""
    s = results["summary"]
    exps = results["experiments"]
    head = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>trainlab reproduce: {_e(results['preset'])} preset</title>\n<style>{_CSS}</style>\n</head>\n"
    )
    parts = [head, "<body>\n<main>\n"]
    ran = s["held"] + s["did_not_hold"]
    parts.append(
        f"<header><h1>The art of training, measured</h1>\n"
        f"<p>Every claim below comes from the course notes on training deep networks; each was rerun on real "
        f"MNIST digits with trainlab and checked against a threshold stated in advance.</p>\n"
        f'<p class="meta">preset <b>{_e(results["preset"])}</b> &middot; data <b>{_e(results["data"])}</b>'
        + (f" ({_e(results['data_note'])})" if results["data_note"] else "")
        + f" &middot; seed {results['seed']} &middot; {results['threads']} CPU thread(s) &middot; "
        f"{results['seconds']:.0f} s &middot; trainlab {_e(results['trainlab_version'])}, torch "
        f"{_e(results['torch_version'])} &middot; {_e(results['created'])}"
        + ("" if results["complete"] else " &middot; <b>incomplete: still running or interrupted</b>")
        + "</p>\n"
        f"<p><b>{s['held']} of {ran}</b> experiments held in full; {s['checks_passed']} of {s['checks']} checks "
        f"passed; {s['not_available']} not available"
        + (f"; {s['errors']} failed to run" if s["errors"] else "") + ".</p></header>\n")

    parts.append('<h2 id="summary">Summary</h2>\n<div class="scroll"><table class="summary">\n<thead><tr>'
                 "<th>Experiment</th><th>Claim</th><th>Result</th><th>Key number</th></tr></thead>\n<tbody>\n")
    for e in exps:
        key = e["summary"] if e["status"] in ("held", "did not hold") else (e["reason"] or "")
        checks = e["checks"]
        counts = f" ({sum(c['passed'] for c in checks)}/{len(checks)} checks)" if checks else ""
        parts.append(f'<tr><td><a href="#{_e(e["name"])}">{_e(e["title"])}</a></td><td>{_e(e["claim"])}</td>'
                     f"<td>{_status_badge(e['status'])}{_e(counts)}</td><td>{_e(key)}</td></tr>\n")
    parts.append("</tbody></table></div>\n")

    for e in exps:
        parts.append(f'<section class="exp" id="{_e(e["name"])}">\n<h2>{_e(e["title"])} {_status_badge(e["status"])}'
                     f"</h2>\n")
        parts.append(f"<blockquote><b>Claim.</b> {_e(e['claim'])}</blockquote>\n")
        meta = [f"Source: {_e(e['source'])}"] if e["source"] else []
        if e["docs"]:
            meta.append(f'Docs: <a href="{_e(e["docs"])}">{_e(e["docs"].rsplit("/", 1)[-1])}</a>')
        if e["settings"].get("data"):
            meta.append(f"data: <b>{_e(e['settings']['data'])}</b>")
        if e["seconds"] is not None:
            meta.append(f"ran in {e['seconds']:.1f} s")
        parts.append(f'<p class="meta">{" &middot; ".join(meta)}</p>\n')
        if e["status"] == "not available":
            parts.append(f"<p><b>Not available:</b> {_e(e['reason'])}</p>\n</section>\n")
            continue
        if e["status"] == "error":
            parts.append(f"<p><b>This experiment failed to run:</b> {_e(e['reason'])}</p>\n</section>\n")
            continue
        for note in e["notes"]:
            parts.append(f'<p class="meta">Note: {_e(note)}</p>\n')
        more = (f' <a class="more" href="{_e(e["docs"])}">More on this: {_e(e["docs"].rsplit("/", 1)[-1])}</a>'
                if e["docs"] else "")
        for i, f in enumerate(figures.get(e["name"], [])):
            parts.append(
                f'<figure id="{_e(e["name"])}-fig{i + 1}"><img src="data:image/png;base64,{f["png"]}" '
                f'width="{f["width"]}" height="{f["height"]}" alt="{_e(f["title"])}" loading="eager">'
                f"<figcaption><b>{_e(f['title'][:1].upper() + f['title'][1:])}.</b> {_e(f['caption'])}{more}"
                f"</figcaption></figure>\n")
        parts.append('<div class="scroll"><table class="checks">\n<thead><tr><th>Check</th><th>Measured</th>'
                     "<th>Threshold</th><th>Result</th><th>What it means</th></tr></thead>\n<tbody>\n")
        for c in e["checks"]:
            badge = '<span class="badge pass">held</span>' if c["passed"] else \
                '<span class="badge fail">did not hold</span>'
            parts.append(f"<tr><td><b>{_e(c['name'])}</b><br><span class=\"explain\">{_e(c['claim'])}</span></td>"
                         f'<td class="num">{_e(_fmt(c["measured"]))}{_e(c.get("unit", ""))}</td>'
                         f'<td class="num">{_e(_threshold(c))}</td><td>{badge}</td>'
                         f'<td class="explain">{_e(c["explanation"])}</td></tr>\n')
        parts.append("</tbody></table></div>\n")
        parts.append("<details><summary>Settings and all measured numbers</summary>\n<pre>"
                     + _e(json.dumps({"settings": e["settings"], "numbers": e["numbers"]}, indent=1)[:200_000])
                     + "</pre></details>\n</section>\n")
    parts.append('<p class="meta">Written by <code>trainlab reproduce</code>. The same numbers, with every check\'s '
                 "threshold, are in results.json next to this file.</p>\n</main>\n</body>\n</html>\n")
    return "".join(parts)
