"""doctor.html: one self-contained page (inline CSS, figures as base64 PNG, no script)."""

from __future__ import annotations

import base64
import html
import json
from typing import Any, Protocol

from trainlab.diagnose._fixes import format_fixes
from trainlab.diagnose._step import StepResult

__all__ = ["render_html", "HtmlReport"]


class HtmlReport(Protocol):
    """What the page shows of a :class:`~trainlab.diagnose.DoctorReport` (a protocol, so this module does not
    import the driver that imports it)."""

    source: str
    steps: list[StepResult]
    seconds: float
    environment: dict[str, Any]

    @property
    def verdict(self) -> str: ...

    @property
    def fixes(self) -> list[dict[str, Any]]: ...

    def to_dict(self) -> dict[str, Any]: ...

_CSS = """
body { margin: 0; color: #1d2327; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.5rem; margin: .4rem 0; } h2 { font-size: 1.2rem; margin: 0 0 .3rem; }
.meta { color: #5b6770; font-size: .9rem; }
section { border-top: 2px solid #d9dee3; padding: 1rem 0 .5rem; }
.badge { display: inline-block; padding: .05rem .55rem; border-radius: 1rem; font-size: .8rem; font-weight: 600; }
.ok { color: #17743a; background: #e3f4e8; } .warn { color: #6b5a00; background: #fbf3cf; }
.fail { color: #a4260f; background: #fbe6e1; } .info, .skip { color: #1f5f99; background: #e6eef7; }
ul { margin: .3rem 0; } li { margin: .15rem 0; }
.advice li::marker { content: "-> "; }
figure { margin: .8rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #d9dee3; }
figcaption { font-size: .88rem; color: #333; }
table { border-collapse: collapse; font-size: .85rem; } td, th { border-bottom: 1px solid #d9dee3; padding: .2rem .5rem;
  text-align: left; vertical-align: top; }
details { margin: .4rem 0; } summary { cursor: pointer; color: #1f5f99; }
pre { background: #f4f6f8; padding: .5rem; overflow-x: auto; font-size: .78rem; }
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        text = json.dumps(v)
        return text if len(text) <= 160 else text[:157] + "..."
    return str(v)


def render_html(report: HtmlReport, pngs: dict[str, bytes]) -> str:
    """The whole report as one HTML string; ``pngs`` maps figure file names to PNG bytes."""
    e = html.escape
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           "<meta name='viewport' content='width=device-width, initial-scale=1'>",
           f"<title>trainlab doctor: {e(report.source)}</title><style>{_CSS}</style></head><body><main>",
           f"<h1>trainlab doctor <span class='badge {report.verdict}'>{report.verdict.upper()}</span></h1>",
           f"<p class='meta'>{e(report.source)} &middot; {len(report.steps)} step(s) in {report.seconds:.1f} s "
           f"&middot; torch {e(str(report.environment.get('torch', '')))} on "
           f"{e(str(report.environment.get('device', '')))}</p>"]
    for s in report.steps:
        d = s.to_dict()
        out.append(f"<section id='step{s.number}'><h2>{s.number}. {e(s.name)} "
                   f"<span class='badge {s.verdict}'>{s.verdict.upper()}</span></h2>")
        out.append(f"<p>{e(s.summary)}</p>")
        if s.findings:
            out.append("<ul>")
            for f in s.findings:
                out.append(f"<li><span class='badge {f.severity}'>{e(f.severity)}</span> {e(f.message)}</li>")
            out.append("</ul>")
        if s.advice:
            out.append("<ul class='advice'>" + "".join(f"<li>{e(a)}</li>" for a in s.advice) + "</ul>")
        for name, (fig, caption) in s.figures.items():
            fname = d["figures"][name]
            data = pngs.get(fname)
            if data is None:
                continue
            b64 = base64.b64encode(data).decode("ascii")
            out.append(f"<figure><img alt='{e(name)}' src='data:image/png;base64,{b64}'>"
                       f"<figcaption>{e(caption)}</figcaption></figure>")
        rows = "".join(f"<tr><th>{e(str(k))}</th><td>{e(_fmt(v))}</td></tr>" for k, v in d["numbers"].items())
        out.append(f"<details><summary>numbers</summary><table>{rows}</table></details></section>")
    fixes = getattr(report, "fixes", [])
    if fixes:
        out.append(f"<section id='fixes'><h2>Fixes, in the order to apply them</h2><pre>{e(format_fixes(fixes))}"
                   "</pre></section>")
    out.append("<section><details><summary>the diagnosed config (one member)</summary><pre>"
               f"{e(json.dumps(report.to_dict()['config'], indent=1))}</pre></details></section>")
    out.append("</main></body></html>")
    return "\n".join(out)
