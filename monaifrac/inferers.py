"""Inferers MONAI lacks: running any inferer under CPU bfloat16 autocast.

MONAI's engines (``SupervisedTrainer``/``SupervisedEvaluator`` with ``amp=True``) autocast on
CUDA only. On a CPU with bfloat16 matrix units (``avx512_bf16``/AMX) a UNet training step runs
about 1.7x faster under ``torch.autocast("cpu", dtype=torch.bfloat16)``. Wrapping the
*inferer* (not the network) keeps the network's ``state_dict`` keys unchanged, so weights
trained this way load anywhere.
"""

from __future__ import annotations

import functools

import torch
from monai.inferers import Inferer


@functools.lru_cache(maxsize=1)
def cpu_bf16_supported() -> bool:
    """True where this CPU has native bfloat16 matrix instructions (x86 ``avx512_bf16`` or AMX)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(flag in flags for flag in (" avx512_bf16", " amx_bf16"))


class AutocastInferer(Inferer):
    """Run ``inferer`` under ``torch.autocast(<input device>, dtype)`` and return float32.

    Args:
        inferer: the inferer to wrap (``SimpleInferer``, ``SlidingWindowInferer``, ...).
        enabled: switch; ``"auto"`` means on when the input is on a CPU that
            :func:`cpu_bf16_supported`, off elsewhere (on CUDA MONAI's own ``amp`` applies).
        dtype: autocast dtype name, ``"bfloat16"`` (default) or ``"float16"``.

    ``__call__(inputs, network, ...)``: inputs (B, C, *spatial); the output has the wrapped
    inferer's shape, cast back to float32 so that losses and metrics run in full precision.
    """

    def __init__(self, inferer: Inferer, enabled: bool | str = "auto", dtype: str = "bfloat16"):
        super().__init__()
        if enabled not in (True, False, "auto"):
            raise ValueError(f"enabled must be true, false or 'auto', got {enabled!r}")
        self.inferer = inferer
        self.enabled = enabled
        self.dtype = getattr(torch, dtype)

    def active(self, device: torch.device) -> bool:
        if self.enabled == "auto":
            return device.type == "cpu" and cpu_bf16_supported()
        return bool(self.enabled)

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        if not self.active(inputs.device):
            return self.inferer(inputs, network, *args, **kwargs)
        with torch.autocast(inputs.device.type, dtype=self.dtype):
            out = self.inferer(inputs, network, *args, **kwargs)
        return out.float() if isinstance(out, torch.Tensor) else out


class AveragingInferer(Inferer):
    """Average class probabilities over several networks and flips (ensemble and flip TTA).

    Args:
        inferer: the inferer each pass runs through (e.g. ``SlidingWindowInferer``).
        members: networks averaged with the one the engine passes in (an ensemble: other
            checkpoints of the same ``network_def``, see :func:`load_members`).
        flip_axes: test-time flips, each a list of spatial dims of the (B, C, W, H) input
            (``[[2], [3]]``: left-right and up-down); the unflipped pass is always included.

    ``__call__(inputs, network)``: inputs (B, C, W, H) → (B, K, W, H). With no member and
    no flip it returns the wrapped inferer's logits unchanged. Otherwise it returns the
    logarithm of the mean softmax probability, which downstream softmax and argmax read
    exactly as they read logits (``softmax(log p) = p``).
    """

    def __init__(self, inferer: Inferer, members=(), flip_axes=()):
        super().__init__()
        self.inferer = inferer
        self.members = list(members)
        self.flip_axes = [list(a) for a in flip_axes]
        for axes in self.flip_axes:
            if not axes or any(a < 2 for a in axes):
                raise ValueError(f"flip axes are spatial dims (2 or more) of a (B, C, *spatial) input, got {axes}")

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        if not self.members and not self.flip_axes:
            return self.inferer(inputs, network, *args, **kwargs)
        total, passes = None, 0
        for net in [network, *self.members]:
            for axes in [None, *self.flip_axes]:
                x = inputs if axes is None else torch.flip(inputs, axes)
                prob = torch.softmax(self.inferer(x, net, *args, **kwargs).float(), dim=1)
                prob = prob if axes is None else torch.flip(prob, axes)
                total = prob if total is None else total + prob
                passes += 1
        return torch.log((total / passes).clamp_min(1e-12))


def load_members(network_def: torch.nn.Module, model_files, device=None) -> list[torch.nn.Module]:
    """One copy of ``network_def`` per file, each with that file's weights, in eval mode.

    Weights are read with ``torch.load(weights_only=True)``: a checkpoint cannot run code.
    A file holding a full training state (``{"model": ...}``) gives its ``model`` entry.

    Raises:
        InputError: a missing, unreadable or non-weights file, naming it.
        ValueError: weights that do not fit ``network_def``, naming the file.
    """
    import copy

    from monaifrac.checkpoints import read_checkpoint

    members = []
    for path in model_files or []:
        state = read_checkpoint(path, device)
        state = state.get("model", state) if isinstance(state, dict) else state
        net = copy.deepcopy(network_def)
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"{path}: weights do not fit network_def ({str(err).splitlines()[0]})") from None
        members.append(net.to(device).eval() if device is not None else net.eval())
    return members
