"""`python -m hp_core ...`: see hp_core.cli."""

from .cli import main

raise SystemExit(main())
