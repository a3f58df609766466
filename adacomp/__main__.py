"""`python -m adacomp` is the `adacomp` command."""

import sys

from adacomp.platform.cli.main import main

sys.exit(main())
