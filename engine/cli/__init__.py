"""The ``segflow`` command line: one module per command group."""
