"""The `adacomp` command line: one module per command group."""
