"""Resolve a device parameter ("auto", "cpu", "cuda", "cuda:1") to a torch.device.

Everything runs on CPU; CUDA is used when present and asked for (or "auto"), never required.
"""
from __future__ import annotations

import warnings

import torch


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """"auto" -> CUDA if available else CPU; a CUDA request without CUDA falls back to CPU with a
    warning, so a robot without a GPU still runs the same launch configuration."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {spec!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"device: {spec!r} requested but CUDA is not available; using CPU",
                      RuntimeWarning, stacklevel=2)
        return torch.device("cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {spec!r}")
    return device
