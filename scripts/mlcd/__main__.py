"""`python -m mlcd` runs the CLI."""

from mlcd.cli import main

raise SystemExit(main())
