"""``python -m san_basicsr -opt options.yml [--launcher pytorch] [--auto_resume]`` (see :mod:`.launcher`)."""

import sys

from san_basicsr.launcher import main

if __name__ == "__main__":
    sys.exit(main())
