"""The ``healthscore`` command line (commands in :mod:`ml.cli.app`, printing in :mod:`ml.cli.render`)."""
