"""Reading checkpoints: weights only, with one clear error for a bad file; random states in a form they
can hold; the mean of several networks' weights, and its batch-norm statistics re-estimated.

Every checkpoint monaifrac loads (resume, warm start, evaluation, inference, ensembles) goes
through :func:`read_checkpoint`, which uses ``torch.load(weights_only=True)``: tensors,
containers and plain numbers load, while a pickled callable is refused before it can run.
A truncated or corrupt file (a run killed during a save by an older writer, a failed copy)
raises :class:`monaifrac.io.InputError` naming the file, not a pickle traceback.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import zipfile

import numpy as np
import torch

from monaifrac.compat.pytorch import is_batch_norm
from monaifrac.io import InputError

logger = logging.getLogger(__name__)


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


# --------------------------------------------------------------------------- random states
# A resumable checkpoint must still load with ``weights_only=True``, so random states are kept
# as tensors, lists and plain numbers, never as pickled NumPy or ``random`` objects.


def numpy_state_to_plain(state: tuple) -> dict:
    """``np.random.RandomState.get_state()`` (or ``np.random.get_state()``) as weights-only types."""
    kind, key, pos, has_gauss, cached_gaussian = state
    return {"kind": str(kind), "key": torch.from_numpy(np.asarray(key, dtype=np.int64).copy()), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}


def numpy_state_from_plain(plain: dict) -> tuple:
    """The inverse of :func:`numpy_state_to_plain`: a tuple ``RandomState.set_state`` takes."""
    key = torch.as_tensor(plain["key"]).numpy().astype(np.uint32)
    return plain["kind"], key, int(plain["pos"]), int(plain["has_gauss"]), float(plain["cached_gaussian"])


def rng_state() -> dict:
    """The process's global random states: torch (CPU and every CUDA device), NumPy and Python ``random``.

    Every value is a tensor, a list or a plain number, so the dict survives ``torch.save`` and
    :func:`read_checkpoint`; :func:`set_rng_state` puts it back exactly.
    """
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state_to_plain(np.random.get_state()),
             "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                        "gauss": None if gauss is None else float(gauss)},
             "cuda": []}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where the device count matches)."""
    torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8))
    np.random.set_state(numpy_state_from_plain(state["numpy"]))
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(v) for v in torch.as_tensor(py["internal"]).tolist()),
                     py["gauss"]))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8) for s in cuda])


def randomizables(obj) -> list:
    """MONAI ``Randomizable`` objects reachable from ``obj`` (a transform, a ``Compose``, a dataset's
    ``transform``), nested ones included, each once, in a fixed order (attribute order, depth first).

    ``monai.data.utils.set_rnd`` stops at the first object that has ``set_random_state`` (a
    ``Compose`` re-seeds its children from its own generator); each child's generator has moved on
    separately since, so capturing states needs every one of them.
    """
    from monai.transforms import Randomizable, Transform

    found: list = []
    seen: set[int] = set()

    def walk(o) -> None:
        if id(o) in seen:
            return
        seen.add(id(o))
        if isinstance(o, dict):
            children = list(o.values())
        elif isinstance(o, (list, tuple)):
            children = list(o)
        elif isinstance(o, (Transform, Randomizable)):  # only transforms are searched: no loggers, readers, data
            if isinstance(getattr(o, "R", None), np.random.RandomState):
                found.append(o)
            children = [v for k, v in vars(o).items() if not k.startswith("__")]
        else:
            children = []
        for child in children:
            walk(child)

    walk(obj)
    return found


def transform_rng_states(obj) -> list[dict]:
    """The generators of :func:`randomizables` of ``obj``, in weights-only form."""
    return [numpy_state_to_plain(t.R.get_state()) for t in randomizables(obj)]


def set_transform_rng_states(obj, states: list[dict]) -> bool:
    """Restore :func:`transform_rng_states`; False (nothing changed) when the transforms differ in number."""
    targets = randomizables(obj)
    if len(targets) != len(states):
        return False
    for t, s in zip(targets, states):
        t.R.set_state(numpy_state_from_plain(s))
    return True


# --------------------------------------------------------------------------- weight averaging


def model_state(saved, path: os.PathLike | str) -> dict:
    """The network's state dict in what :func:`read_checkpoint` returned: a training checkpoint's ``"model"``
    entry, or the file itself where it holds only the network (``model.pt``)."""
    if isinstance(saved, dict) and isinstance(saved.get("model"), dict):
        return saved["model"]
    if isinstance(saved, dict) and saved and all(isinstance(v, torch.Tensor) for v in saved.values()):
        return saved
    raise InputError(path, "holds no network weights (neither a state dict nor a training checkpoint's 'model')")


def average_weights(paths: list[os.PathLike | str]) -> dict:
    """The mean of the networks' weights in ``paths``: each floating-point tensor averaged, element by element
    (in float64, stored back in its own dtype), each integer tensor (batch norm's ``num_batches_tracked``)
    taken from the last file.

    Averaging the epochs of one run's late schedule ("stochastic weight averaging") gives one network
    that costs what one costs at inference, where an ensemble of the same checkpoints costs their number.
    The batch-norm running statistics are averaged like the weights, an approximation of the statistics
    of the averaged network's own activations.

    Raises:
        InputError: a file unreadable, without network weights, or with other tensor names or shapes than
            the first.
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    last: dict[str, torch.Tensor] = {}
    for i, path in enumerate(paths):
        state = model_state(read_checkpoint(path), path)
        if i and set(state) != set(last):
            diff = sorted(set(state) ^ set(last))
            raise InputError(path, f"other tensors than {paths[0]} ({len(diff)} differ, e.g. {diff[0]!r})")
        for name, tensor in state.items():
            if i and tensor.shape != last[name].shape:
                raise InputError(path, f"{name!r} is {tuple(tensor.shape)}, {tuple(last[name].shape)} in {paths[0]}")
            if tensor.is_floating_point():
                total[name] = total[name] + tensor.double() if i else tensor.double()
            last[name] = tensor
    return {name: (total[name] / len(paths)).to(tensor.dtype) if tensor.is_floating_point() else tensor
            for name, tensor in last.items()}


def update_batch_norm(network: torch.nn.Module, loader, model_file: os.PathLike | str,
                      output_file: os.PathLike | str, device: torch.device | str = "cpu") -> dict:
    """Load ``model_file`` into ``network``, re-estimate its batch-norm running statistics on ``loader``'s
    images, and save the network's weights to ``output_file``; nothing else changes.

    Averaged weights (:func:`average_weights`) carry averaged statistics; the averaged network's own
    activations have others. ``torch.optim.swa_utils.update_bn`` recomputes them: every batch-norm layer's
    running mean and variance become the equal-weight mean over the batches of the batch statistics, in
    training mode without gradients (the SWA paper's step). The loader is the training loader
    (``train#dataloader``: films as training sees them, augmented, padded to a batch).

    Args:
        network: the network ``model_file``'s weights belong to (its weights are overwritten).
        loader: yields dicts with ``"image"`` (B, C, H, W).
        model_file, output_file: a ``model.pt`` or training checkpoint; the weights written (atomically).
        device: where the forward passes run.

    Returns:
        ``{"batches": n, "films": n, "layers": n}``, also logged (INFO) with ``output_file``.
    """
    from torch.optim.swa_utils import update_bn

    from monaifrac.io import atomic_path

    network.load_state_dict(model_state(read_checkpoint(model_file), model_file))
    layers = [m for m in network.modules() if is_batch_norm(m)]
    if not layers:
        raise InputError(model_file, "the network has no batch-norm layer to update")
    counts = {"batches": 0, "films": 0, "layers": len(layers)}

    def images():
        for batch in loader:
            counts["batches"] += 1
            counts["films"] += len(batch["image"])
            yield torch.as_tensor(batch["image"])

    update_bn(images(), network, device=torch.device(device))
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    with atomic_path(output_file) as tmp:
        torch.save(state, tmp)
    logger.info("batch norm re-estimated on %d films (%d batches, %d layers) -> %s", counts["films"],
                counts["batches"], counts["layers"], output_file)
    return counts
