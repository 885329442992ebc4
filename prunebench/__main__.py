"""``python -m prunebench`` is ``prunebench``."""

from prunebench.cli import main

main()
