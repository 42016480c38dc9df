"""`python -m soak`."""

from soak.cli import main

main()
