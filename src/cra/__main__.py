"""``python -m cra``: the ``cra`` command line (needs the ``cli`` extra)."""

from cra.cli import main

main()
