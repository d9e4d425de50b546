#!/bin/sh
# The scale run of issue 25: N sim boards (default 20) in network namespaces behind one shared link of
# 40 Mbit/s with a 10 ms round trip, fetched by one `camctl fetch`; prints goodput (fraction of the
# link), RTT, verification, starvation and the ground's peak RSS. Needs root, iproute2 and
# /dev/net/tun; every namespace it makes is deleted at the end. See docs/bench.md (`fleet`).
#   tools/netscale/run.sh [--boards N] [--mb MB-per-board] [--json]
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" -c \
    'import sys; from camctl.bench.fleet import main; raise SystemExit(main(sys.argv[1:]))' run "$@"
