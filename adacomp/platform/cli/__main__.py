"""`python -m adacomp.platform.cli`: the same as the `adacomp` command."""

from adacomp.platform.cli.main import main

raise SystemExit(main())
