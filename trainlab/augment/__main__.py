"""``python -m trainlab.augment [out_dir]``: draw the augmentation figures (default docs/figures)."""

from __future__ import annotations

import sys

from trainlab.augment._figures import write_figures

if __name__ == "__main__":
    for path in write_figures(sys.argv[1] if len(sys.argv) > 1 else "docs/figures"):
        print(path)
