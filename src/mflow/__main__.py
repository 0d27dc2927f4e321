"""`python -m mflow`."""

from mflow.launch import main

main()
