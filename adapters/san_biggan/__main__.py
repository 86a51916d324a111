"""``python -m san_biggan``: see :mod:`san_biggan.launcher`."""

from .launcher import main

raise SystemExit(main())
