"""Board side of the retrieval protocol (``docs/protocol.md``).

- :mod:`camctl.publish.catalog`: what the board offers (LISTING facts, path checks, FETCH fds);
- :mod:`camctl.publish.previews`: THUMBS previews made on a worker thread, cached;
- :mod:`camctl.publish.server`: :class:`Publisher`, the ROUTER/PUB sockets and the request handlers.

Segments are read only through :mod:`camctl.store.reader`.
"""

from camctl.publish.catalog import Catalog
from camctl.publish.server import Board, Publisher

__all__ = ["Board", "Catalog", "Publisher"]
