"""Board side of the retrieval protocol (``docs/protocol.md``).

- :mod:`camctl.board.publish.catalog`: what the board offers (LISTING facts, path checks, FETCH fds);
- :mod:`camctl.board.publish.previews`: THUMBS previews made on a worker thread, cached;
- :mod:`camctl.board.publish.server`: :class:`Publisher`, the ROUTER/PUB sockets and the request handlers.

Segments are read only through :mod:`camctl.store.reader`.
"""

from camctl.board.publish.catalog import Catalog
from camctl.board.publish.server import Board, Publisher

__all__ = ["Board", "Catalog", "Publisher"]
