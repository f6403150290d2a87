"""What a run asks of and records about the machine: the device it runs on, the versions of its libraries."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata

from strata.errors import UserError

SWEEP_LIBRARIES = ("strata", "torch", "transformers", "lm_eval", "numpy")


class DeviceError(UserError):
    """A device that this machine does not have."""


def resolve_device(device: str) -> str:
    """``auto``: cuda where a CUDA device is available, else cpu. A CUDA device asked for must be there."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {device} asked for, but no CUDA device is available; use cpu (or auto)")
    return device


def library_versions(names: Sequence[str] = SWEEP_LIBRARIES) -> dict[str, str]:
    """Installed versions of the distributions ``names``; those not installed are left out."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
