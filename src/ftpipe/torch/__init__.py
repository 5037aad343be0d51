"""PyTorch integration: collate samples into tensors, move batches to a device, and
hand a pipeline to a training loop written for ``torch.utils.data.DataLoader``.

Imported on demand (``import ftpipe.torch``); ``import ftpipe`` never imports torch.

Example:
    >>> import ftpipe, ftpipe.torch
    >>> def make_builder(epoch):
    ...     return (ftpipe.PipelineBuilder().add_source(range(64))
    ...             .pipe(load_sample, concurrency=4)
    ...             .aggregate(32).pipe(ftpipe.torch.collate).add_sink(buffer_size=4))
    >>> loader = ftpipe.torch.PipelineLoader(make_builder)
    >>> for epoch in range(3):
    ...     loader.set_epoch(epoch)
    ...     for x, y in loader:  # a fresh pipeline per epoch
    ...         ...
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401  (the check: everything below needs it)
except ImportError as exc:  # pragma: no cover - exercised without torch installed
    raise ImportError(
        "ftpipe.torch needs PyTorch, which is not installed: pip install 'ftpipe[torch]' "
        f"(or install torch yourself). Original error: {exc}"
    ) from exc

from ._cache import CacheLoader
from ._collate import as_tensors, collate
from ._device import to_device
from ._loader import PipelineLoader

__all__ = ["CacheLoader", "PipelineLoader", "as_tensors", "collate", "to_device"]
