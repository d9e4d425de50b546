"""Bench figure ``encode_scaling``: EncoderPool(2) against EncoderPool(1) on 1080p frames."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from camctl.bench.harness import QUALITY, Ctx, Figure, Metric


def encode_rate(images: list[np.ndarray], threads: int, n: int) -> float:
    from camctl.board.encode import EncoderPool

    with EncoderPool(threads) as pool:
        t0 = time.perf_counter()
        futs = [pool.submit(images[i % len(images)], QUALITY) for i in range(n)]
        for f in futs:
            f.result()
        return n / (time.perf_counter() - t0)


def bench_encode(ctx: Ctx) -> dict[str, Any]:
    images, _ = ctx.corpus()
    n = 60 if ctx.quick else 240
    r1, r2 = [], []
    for _ in range(1 if ctx.quick else 2):
        r1.append(encode_rate(images, 1, n))
        r2.append(encode_rate(images, 2, n))
    return {"encode_scaling": max(r2) / max(r1),
            "_note": f"{n} frames each, best of {len(r1)}: 1 thread {max(r1):.0f} fps, "
                     f"2 threads {max(r2):.0f} fps ({os.cpu_count()} CPUs)"}


FIGURE = Figure("encode_scaling", bench_encode, (
    Metric("encode_scaling", "1080p JPEG frames/s, EncoderPool(2) / EncoderPool(1)", ">=", 1.6),
))
