"""Write trainlab/experiments/run_times.json from a ``trainlab reproduce --preset quick`` results.json.

    python scripts/run_times.py runs/reproduce-quick/results.json [--date 2026-11-24] [--about TEXT]

Run it on an otherwise idle machine: the seconds are wall-clock (``trainlab reproduce --list`` shows them as
each experiment's typical run time).
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "trainlab" / "experiments" / "run_times.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    ap.add_argument("--about", default=None, help="how and where it was measured")
    a = ap.parse_args()
    r = json.loads(a.results.read_text())
    seconds = {e["name"]: round(float(e["seconds"]), 1) for e in r["experiments"] if e.get("seconds") is not None}
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    data = {"about": a.about or old.get("about", ""), "preset": r.get("preset", "quick"), "measured": a.date,
            "seconds": {**old.get("seconds", {}), **seconds}}
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT} ({len(seconds)} experiments)")


if __name__ == "__main__":
    main()
