"""``python -m jaxdecomp``: the same command as ``jaxdecomp``."""

import sys

from jaxdecomp.cli import main

sys.exit(main())
