"""``python -m fastretro ...`` is the ``fastretro`` command."""

import sys

from fastretro.tools.cli import main

sys.exit(main())
