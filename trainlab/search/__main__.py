"""``python -m trainlab.search CONFIG.toml ...``: the same as ``trainlab tune``."""

import sys

from trainlab.search._cli import main

sys.exit(main())
