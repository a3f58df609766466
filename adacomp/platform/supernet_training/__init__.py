"""Ensemble training of a search's weight-sharing supernet (AdaSpring), locally or on Ray Train.

Its own layer, below the search: a search in supernet mode (`evaluation: supernet`) trains the
supernet as its first job (or reuses the one its directory holds), and `adacomp supernet train`
runs the same job on its own. The supernet's configuration search and the bundle export stay
in `platform/supernet`, above the search.
"""
