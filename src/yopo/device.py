"""Where a run computes: the device kind, which is part of a run's identity, and what is recorded
beside it (the device's name, the thread count), which device-dependent tables group by.

The kind (cpu / cuda / mps) enters the identity because it changes results, not only speed:
PruneNet's sampled masks and self-generated text come from device-specific random streams, and
kernels round differently. The name and thread count are recorded, not hashed: a run on another
GPU of the same kind is the same run, but its throughput is not pooled with this one's.
"""
from __future__ import annotations

import os
import platform
from functools import lru_cache
from typing import Any

import torch


def resolve_device(name: str) -> str:
    """The torch device a run uses: `auto` is cuda where available, else cpu."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def device_kind(name: str, device_map: Any = None) -> str:
    """cpu / cuda / mps: the part of `device` (or of a model's device_map, which spreads a model
    over the GPUs) that identifies a run. "cuda:1" and "cuda" are one kind."""
    if device_map:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(resolve_device(str(name))).type


@lru_cache(maxsize=None)
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_record(device: str, dtype: torch.dtype) -> dict[str, Any]:
    """What metrics.json records of the machine: {device (kind), device_name, threads, dtype}."""
    kind = torch.device(device).type
    name = torch.cuda.get_device_name(torch.device(device)) if kind == "cuda" else (
        _cpu_name() if kind == "cpu" else kind)
    return {"device": kind, "device_name": name, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "dtype": str(dtype).removeprefix("torch.")}
