"""The board: what runs on a Pi (``camctl run``, ``doctor``, ``gpio watch``, ``install-service``).

:mod:`~camctl.board.daemon` wires it; :mod:`~camctl.board.config` reads its TOML;
:mod:`~camctl.board.events` is the phase machine fed by :mod:`~camctl.board.gpio`;
:mod:`~camctl.board.capture` runs each camera (:mod:`~camctl.board.cameras`) through the
:mod:`~camctl.board.encode` pool into the store; :mod:`~camctl.board.resume` picks a flight up after
a restart; :mod:`~camctl.board.publish` serves the store's files. It never imports
:mod:`camctl.ground`.
"""
