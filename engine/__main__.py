"""``python -m engine`` runs the segflow CLI (used to start workers from the same interpreter)."""

from engine.cli.main import main

main()
