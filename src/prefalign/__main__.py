"""``python -m prefalign`` runs the command line."""

from prefalign.cli import main

main()
