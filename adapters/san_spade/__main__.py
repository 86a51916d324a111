"""``python -m san_spade``: see :mod:`san_spade.launcher`."""

import sys

from .launcher import main

sys.exit(main())
