"""``python -m camctl.bench KIND ...``: the bench's helper child processes (see
:mod:`camctl.bench.children`)."""

import sys

from camctl.bench.children import child_main

raise SystemExit(child_main(sys.argv[1:]))
