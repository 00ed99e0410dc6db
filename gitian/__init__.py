"""gitian-py: the Gitian deterministic build toolkit, rebuilt in Python.

Copyright (C) 2026 the gitian-py authors. GPL-3.0-or-later.
"""

__version__ = "0.1.0"
