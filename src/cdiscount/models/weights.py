"""Pretrained weights: local cache first, download only where a network exists, never hang.

torchvision and pretrainedmodels download ImageNet weights from the internet on first use.
Offline, that call would either hang on a socket or fail with a confusing stack trace; here
a missing weight file is detected up front and the error says which file to place where.
Set ``CDISCOUNT_OFFLINE=1`` to forbid any download attempt.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch.hub

from ..errors import CdiscountError


class WeightsUnavailable(CdiscountError, RuntimeError):
    """Pretrained weights are neither cached nor downloadable."""


def cache_dir() -> Path:
    """Where torch.hub (torchvision, pretrainedmodels) keeps downloaded weights: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _online(url: str, timeout: float = 3.0) -> bool:
    if os.environ.get("CDISCOUNT_OFFLINE", "") not in ("", "0"):
        return False
    parts = urlparse(url)
    try:
        socket.create_connection((parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def cached_path(url: str) -> Path:
    """Where the weight file for ``url`` is (or would be) cached."""
    return cache_dir() / Path(urlparse(url).path).name


def is_cached(url: str) -> bool:
    """Whether the weight file for ``url`` is already in the local cache (no network touched)."""
    return cached_path(url).exists()


def ensure_weights(url: str, what: str) -> Path:
    """Return the cached weight file for ``url``, downloading it only if a network is reachable."""
    path = cached_path(url)
    if path.exists():
        return path
    if not _online(url):
        raise WeightsUnavailable(
            f"{what}: ImageNet weights are not cached and no network is reachable.\n"
            f"  Download {url}\n  and place it at {path}\n"
            f"  (or set TORCH_HOME to a folder whose hub/checkpoints/ holds it),\n"
            f"  or train from scratch with `train.pretrained: none`."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(path), progress=True)
    return path
