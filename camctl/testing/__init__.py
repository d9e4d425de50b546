"""Doubles and tools the package itself needs outside the tests (``camctl bench`` uses them).

- :mod:`~camctl.testing.picamera2_double`: a strict picamera2 + libcamera double, pinned to the real
  sources by tests/test_picamera2_strict.py;
- :mod:`~camctl.testing.netproxy`: a TCP proxy that delays every byte (a link with latency).
"""
