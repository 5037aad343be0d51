"""``to_device``: a stage function that moves every tensor in a batch to a device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ._collate import map_leaves

__all__ = ["to_device"]


def to_device(
    device: str | torch.device, *, pin_memory: bool | None = None, non_blocking: bool = True
) -> Callable[[Any], Any]:
    """Return a stage function that moves the tensors of a batch to ``device``.

    Put it last: ``.pipe(ftpipe.torch.collate).pipe(ftpipe.torch.to_device("cuda"))``.
    The copy to the GPU then overlaps the training step, as ``pin_memory=True``
    does for a DataLoader.

    Args:
        device: Where the tensors go (``"cuda"``, ``"cuda:1"``, ``torch.device(...)``, ``"cpu"``).
        pin_memory: Copy CPU tensors into page-locked memory first, so the
            transfer can be asynchronous.  ``None`` (default): pin when CUDA is
            available and ``device`` is a CUDA device.  Pinning never happens
            without CUDA, whatever this says.
        non_blocking: Passed to ``Tensor.to``; only asynchronous from pinned memory.

    Returns:
        A function of one batch (tensors in any nesting of dicts, tuples and
        lists; other values pass through).  Without CUDA and for a CPU device
        it returns the batch unchanged (the same objects, no copy).

    Raises:
        RuntimeError: ``device`` names CUDA, but CUDA is not available.
    """
    target = torch.device(device)
    cuda = torch.cuda.is_available()
    if target.type == "cuda" and not cuda:
        raise RuntimeError(
            f"to_device({str(device)!r}): CUDA is not available in this torch build or machine "
            f"(torch {torch.__version__}); use 'cpu'"
        )
    pin = cuda and (target.type == "cuda" if pin_memory is None else bool(pin_memory))
    return _ToDevice(target, pin, non_blocking, noop=target.type == "cpu" and not cuda)


class _ToDevice:
    """The stage function ``to_device`` returns (a class, so it pickles and names itself)."""

    def __init__(self, device: torch.device, pin: bool, non_blocking: bool, *, noop: bool) -> None:
        self.device = device
        self.pin = pin
        self.non_blocking = non_blocking
        # Without CUDA every tensor is already on the CPU: return the batch itself.
        self.noop = noop
        self.__name__ = self.__qualname__ = f"to_device({str(device)!r})"

    def __call__(self, batch: Any) -> Any:
        if self.noop:
            return batch
        return _move(batch, self.device, self.pin, self.non_blocking)

    def __repr__(self) -> str:
        return f"<ftpipe.torch.{self.__name__}, pin_memory={self.pin}>"


def _move(obj: Any, device: torch.device, pin: bool, non_blocking: bool) -> Any:
    def move(leaf: Any) -> Any:
        if not isinstance(leaf, torch.Tensor):
            return leaf
        if pin and leaf.device.type == "cpu" and not leaf.is_pinned():
            leaf = leaf.pin_memory()
        return leaf.to(device, non_blocking=non_blocking)

    return map_leaves(move, obj)
