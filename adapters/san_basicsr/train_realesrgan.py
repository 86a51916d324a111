"""``python -m san_basicsr.train_realesrgan -opt options.yml [...]``: Real-ESRGAN's pipeline (see :mod:`.launcher`)."""

import sys

from san_basicsr.launcher import main

if __name__ == "__main__":
    sys.exit(main(pipeline="realesrgan"))
