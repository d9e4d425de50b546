"""``python -m camctl`` runs the same console script as ``camctl``."""

from camctl.cli import main

raise SystemExit(main())
