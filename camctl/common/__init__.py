"""What the board and the ground both speak; imports neither of them.

- :mod:`~camctl.common.protocol`: the wire messages, each with its paired encode/decode;
- :mod:`~camctl.common.keys`: CURVE key folders and allow-lists;
- :mod:`~camctl.common.records`: the flight event log's records, typed, encode/decode side by side;
- :mod:`~camctl.common.frames`: frames from camera to store;
- :mod:`~camctl.common.ledger`: their books;
- :mod:`~camctl.common.phases`: phase and event names;
- :mod:`~camctl.common.fsutil`: durable-file helpers.
"""
