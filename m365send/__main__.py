"""``python -m m365send``."""

import sys

from m365send.cli import main

sys.exit(main())
