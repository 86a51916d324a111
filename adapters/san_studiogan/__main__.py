"""``python -m san_studiogan --studiogan-root PATH -- <src/main.py arguments>`` (see :mod:`.launcher`)."""

import sys

from san_studiogan.launcher import main

if __name__ == "__main__":
    sys.exit(main())
