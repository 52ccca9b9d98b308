"""Reading checkpoints: weights only, with one clear error for a bad file.

Every checkpoint monaifrac loads (resume, warm start, evaluation, inference, ensembles) goes
through :func:`read_checkpoint`, which uses ``torch.load(weights_only=True)``: tensors,
containers and plain numbers load, while a pickled callable is refused before it can run.
A truncated or corrupt file (a run killed during a save by an older writer, a failed copy)
raises :class:`monaifrac.io.InputError` naming the file, not a pickle traceback.
"""

from __future__ import annotations

import os
import pickle
import zipfile

import torch

from monaifrac.io import InputError


def read_checkpoint(path: os.PathLike | str, map_location=None):
    """The object saved in ``path`` (a state dict, or a dict of them), weights only.

    Raises:
        InputError: missing, empty, truncated, corrupt, or holding anything but weights.
    """
    try:
        size = os.path.getsize(path)
    except OSError:
        raise InputError(path, "checkpoint not found") from None
    if size == 0:
        raise InputError(path, "checkpoint is empty (0 bytes)")
    try:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(path, f"refused: not a weights-only checkpoint ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(path, f"not a readable checkpoint, truncated or corrupt? ({first})") from None
