"""Board side of the retrieval protocol (``docs/protocol.md``).

- :mod:`camctl.board.publish.catalog`: what the board offers (LISTING facts, path checks, fds);
- :mod:`camctl.board.publish.previews`: THUMBS previews made on a worker thread, cached;
- :mod:`camctl.board.publish.handlers`: the answer to each request verb;
- :mod:`camctl.board.publish.backlog`: per-peer credit, replies owed to a peer that is not reading;
- :mod:`camctl.board.publish.budget`: reply bytes handed to libzmq and not yet freed;
- :mod:`camctl.board.publish.guard`: the connection cap (socket monitors), cutting a connection;
- :mod:`camctl.board.publish.memory`: the memory watchdog (resident size against publish.memory_mb);
- :mod:`camctl.board.publish.sockets`: socket options, CURVE, reading one request;
- :mod:`camctl.board.publish.server`: :class:`Publisher`, the ROUTER/PUB sockets and their thread.

Segments are read only through :mod:`camctl.store.reader`.
"""

from camctl.board.publish.catalog import Catalog
from camctl.board.publish.server import Board, Publisher

__all__ = ["Board", "Catalog", "Publisher"]
