"""Where the tests' data lives: ``tests/data/`` in this repository.

Every test that reads recorded material (real asserts, signatures, keys,
descriptors, golden files, the Psych corpus) finds it through these paths,
so any clone runs the suite; ``tests/data/README.md`` says where each file
came from.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
#: Real-world Gitian material, copied from the steering repository's compat set.
COMPAT = DATA / "compat"
