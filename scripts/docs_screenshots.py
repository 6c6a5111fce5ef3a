"""Regenerate the screenshots in docs/training.md (not part of the test suite).

    python scripts/docs_screenshots.py            # both
    python scripts/docs_screenshots.py terminal   # needs tmux
    python scripts/docs_screenshots.py notebook   # needs nbconvert and a headless chromium

terminal: ``trainlab train`` runs in a detached tmux session of 110x32 (a real terminal, so the
live bar is drawn); the pane is captured mid-epoch and at the end, and each capture's text is
rendered to a PNG with matplotlib (monospace, dark background).
notebook: examples/quickstart.ipynb is executed, converted to HTML with nbconvert, and
screenshotted by headless chromium.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
FIG = ROOT / "docs" / "figures"
COMMAND = ("trainlab train examples/mlp.toml --out /tmp/trainlab-screenshot-run --set train.epochs=5 "
           "--set population.size=3 --set 'model.init_scale=[1, 0.1, 0.01]'")


def render_text(text: str, path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [l.rstrip() for l in text.rstrip().split("\n")]
    cols = max(len(l) for l in lines)
    w, h = 0.082 * cols + 0.5, 0.176 * len(lines) + 0.8  # 10 pt x 1.25 line spacing = 0.174 in a line
    fig = plt.figure(figsize=(w, h), facecolor="#1e1e1e")
    fig.text(0.25 / w, 1 - 0.2 / h, title, color="#9a9a9a", family="monospace", fontsize=9, va="top")
    fig.text(0.25 / w, 1 - 0.5 / h, "\n".join(lines), color="#e8e8e8", family="DejaVu Sans Mono", fontsize=10,
             va="top", linespacing=1.25)
    fig.savefig(path, dpi=110, facecolor=fig.get_facecolor())
    plt.close(fig)


def terminal() -> None:
    if not shutil.which("tmux"):
        sys.exit("tmux is needed (apt-get install tmux)")
    session = f"trainlab-shot-{os.getpid()}"
    env = f"PYTHONPATH={ROOT} PATH={Path(sys.executable).parent}:$PATH"
    cmd = f"cd {ROOT}; export {env}; echo \"$ {COMMAND}\"; {COMMAND.replace('trainlab ', 'python -m trainlab.cli ', 1)}; sleep 600"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "110", "-y", "32", cmd], check=True)
    try:
        def pane() -> str:
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True,
                                  check=True).stdout

        mid = None
        end = time.monotonic() + 300
        while time.monotonic() < end:
            text = pane()
            if mid is None and re.search(r"epoch 3/5:\s+[3-9]\d%", text):  # the bar half-way through epoch 3
                mid = text
            if "steps in" in text:
                break
            time.sleep(0.05)
        if mid is None:
            sys.exit("did not catch the bar mid-epoch; is the machine too fast? raise train.epochs")
        render_text(mid, FIG / "terminal-training.png", title="tmux: trainlab train, mid-epoch (live bar)")
        render_text(text, FIG / "terminal-finished.png", title="tmux: trainlab train, finished")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def notebook() -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("a headless chromium is needed (apt-get install chromium)")
    os.environ.pop("MPLBACKEND", None)  # the kernel's own inline backend, so plotted figures show
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "examples")}}).execute()
    # A headless, offline browser cannot load the widget JavaScript, and the widget's text form is
    # frozen at 0%: leave tqdm's bar out of the static page (the line under it says where training ended).
    for cell in nb.cells:
        cell["outputs"] = [o for o in cell.get("outputs", [])
                           if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "quickstart.html"
        page.write_text(body)
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--no-first-run", "--hide-scrollbars", f"--screenshot={FIG / 'notebook-quickstart.png'}",
                        "--window-size=1200,2150", page.as_uri()], check=True, capture_output=True, timeout=120)


if __name__ == "__main__":
    which = sys.argv[1:] or ["terminal", "notebook"]
    FIG.mkdir(parents=True, exist_ok=True)
    for w in which:
        {"terminal": terminal, "notebook": notebook}[w]()
        print(f"wrote {w} screenshot(s) under {FIG}")
