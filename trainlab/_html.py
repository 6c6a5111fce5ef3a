"""HTML pieces shared by the notebook views (a leaf module: it imports nothing of trainlab)."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figure_png", "cell", "table", "png_tag"]


def figure_png(fig: Figure, *, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (and closed, if pyplot knows it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    try:
        import matplotlib.pyplot as plt

        plt.close(fig)
    except Exception:  # noqa: BLE001 - a Figure not managed by pyplot needs no closing
        pass
    return buf.getvalue()


def cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v.is_integer() and abs(v) >= 2:
            return str(int(v))
        return f"{v:.3g}" if v != 0 and abs(v) < 1e-3 else f"{v:.4f}"  # a weight decay of 1e-05 is not 0.0000
    if isinstance(v, dict):
        return html.escape(f"step {v.get('step', v.get('epoch'))}")
    return html.escape(str(v))


def table(rows: list[dict[str, Any]], keys: list[str], *, caption: str = "") -> str:
    keys = [k for k in keys if any(k in r for r in rows)]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="trainlab">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def png_tag(data: bytes, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}"{w}/>'


