"""The key under which prediction caches (normalisation statistics, host
copies of weights, constrained CRF scores) remember the tensors they were
built from."""
from typing import Iterable, Tuple

import torch


def weights_key(tensors: Iterable[torch.Tensor]) -> Tuple[tuple, ...]:
    """Storage address, version counter, dtype and shape of each tensor: a
    new or resized tensor, ``load_state_dict`` and in-place torch edits all
    change it. Updates that bypass torch's version counter (thinc's optimizer
    writing through a numpy view of a weight) do not: every cache keyed by
    this is also dropped by its module's ``train()``, which each training
    step calls."""
    return tuple((t.data_ptr(), t._version, t.dtype, tuple(t.shape)) for t in tensors)
