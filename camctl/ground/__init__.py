"""The ground station: what runs on a laptop after (and during) a flight; imports no board module.

- :mod:`camctl.ground.client`: :class:`Client`, one board over one DEALER;
- :mod:`camctl.ground.download`: one file: FETCH window, ``.part`` resume, write + hash, sha256,
  rename;
- :mod:`camctl.ground.fetch`: :func:`fetch`, many boards into one folder, and its report;
- :mod:`camctl.ground.flights`: flights on disk, their time bases and ``ls`` records;
- :mod:`camctl.ground.status`: board STATUS polls and broadcasts;
- :mod:`camctl.ground.views`: ``ls`` and ``status`` printed as tables or JSON;
- :mod:`camctl.ground.firstlook`, :mod:`camctl.ground.export`, :mod:`camctl.ground.mission`: the
  first look, the exports, the test conductor's page.
"""

from camctl.exc import BoardTimeout, LinkDropped  # what a caller of Client and fetch catches
from camctl.ground.client import Client
from camctl.ground.fetch import BoardReport, FetchReport, fetch, print_report

__all__ = ["BoardReport", "BoardTimeout", "Client", "FetchReport", "LinkDropped", "fetch",
           "print_report"]
