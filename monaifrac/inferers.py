"""Inferers MONAI lacks: the whole film in one pass, any inferer under CPU bfloat16 autocast,
and the average of several networks and flips.

MONAI's engines (``SupervisedTrainer``/``SupervisedEvaluator`` with ``amp=True``) autocast on
CUDA only. On a CPU with bfloat16 matrix units (``avx512_bf16``/AMX) a UNet training step runs
about 1.7x faster under ``torch.autocast("cpu", dtype=torch.bfloat16)``. Wrapping the
*inferer* (not the network) keeps the network's ``state_dict`` keys unchanged, so weights
trained this way load anywhere.
"""

from __future__ import annotations

import copy
import functools
import itertools

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type

from monaifrac.transforms import film_shape


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
        if isinstance(enabled, str):  # from the command line (`--cpu_bf16 false`) the value arrives as text
            enabled = {"true": True, "false": False, "auto": "auto"}.get(enabled.strip().lower(), enabled)
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


class WholeFilmInferer(Inferer):
    """Run the network once over the whole film, padded to a multiple of ``divisor``.

    A FracAtlas film (373 x 454) fits in memory whole, and the network sees all of it at once:
    on the official valid split the shipped UNet scored fracture dice_pos 0.166 this way
    against 0.109 through a 256 x 256 sliding window, at about half the compute (the windows
    of a 454 x 373 film cover 2.3 times its pixels). Films larger than ``max_pixels`` go to
    ``fallback`` (a sliding window with large windows), which bounds memory.

    Args:
        divisor: each spatial side is padded up to a multiple of this (16 for a UNet with four
            stride-2 levels). The padding is split evenly between both ends and filled with
            ``value`` (0: the darkest value of a film scaled to [0, 1], what the sliding window
            pads with too).
        max_pixels: largest padded film (pixels) run in one pass; None: no limit.
        fallback: the inferer for larger films; required when ``max_pixels`` is set.
        value: padding value.
        max_side, side, scale: the film is brought to the scale training saw it at through
            :class:`monaifrac.transforms.LimitLongSided` with the same numbers
            (:func:`monaifrac.transforms.film_shape`): a film whose long side is over ``max_side`` px
            to a long side of ``side`` x ``scale`` px, any other film enlarged by ``scale``
            (reduced by area, enlarged bilinearly); the logits are scaled back (bilinear) to the
            film's size. ``max_side=None`` and ``scale=1`` (default): every film as it is.

    ``__call__(inputs, network)``: inputs (B, C, H, W) → the network's output cropped back to
    (B, K, H, W); a MetaTensor input gives a MetaTensor output with the input's metadata.
    """

    def __init__(self, divisor: int = 16, max_pixels: int | None = None, fallback: Inferer | None = None,
                 value: float = 0.0, max_side: int | None = None, side: int = 454, scale: float = 1.0):
        super().__init__()
        if divisor < 1:
            raise ValueError(f"divisor must be >= 1, got {divisor}")
        if max_pixels is not None and fallback is None:
            raise ValueError("max_pixels needs a fallback inferer for the films above it")
        if max_side is not None and side > max_side:
            raise ValueError(f"side ({side}) must not exceed max_side ({max_side})")
        self.divisor, self.max_pixels, self.fallback, self.value = divisor, max_pixels, fallback, value
        film_shape([1, 1], scale)  # validates the scale
        self.max_side, self.side, self.scale = max_side, side, float(scale)

    def scaled_shape(self, spatial) -> list[int] | None:
        """The shape the network sees a film of ``spatial`` at (as training's ``LimitLongSided``
        scales it), or None where it sees it as it is."""
        return film_shape(spatial, self.scale, self.max_side, self.side)

    def padded_shape(self, spatial) -> list[int]:
        return [-(-int(s) // self.divisor) * self.divisor for s in spatial]

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        scaled = self.scaled_shape(inputs.shape[2:])
        if scaled is None:
            return self._padded_pass(inputs, network, *args, **kwargs)
        x = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        mode = "bilinear" if torch.Size(scaled).numel() > inputs.shape[2:].numel() else "area"
        x = F.interpolate(x, size=scaled, mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
        out = self._padded_pass(x, network, *args, **kwargs)
        out = F.interpolate(out, size=list(inputs.shape[2:]), mode="bilinear", align_corners=False)
        if isinstance(inputs, MetaTensor):
            out = convert_to_dst_type(out, MetaTensor([]).copy_meta_from(inputs, copy_attr=False))[0]
        return out

    def _padded_pass(self, inputs: torch.Tensor, network, *args, **kwargs):
        spatial = inputs.shape[2:]
        padded = self.padded_shape(spatial)
        if self.max_pixels is not None and torch.Size(padded).numel() > self.max_pixels:
            return self.fallback(inputs, network, *args, **kwargs)
        x = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        before = [(target - size) // 2 for size, target in zip(spatial, padded)]
        pads = []  # F.pad lists the last dim first: (left, right, top, bottom)
        for size, target, b in reversed(list(zip(spatial, padded, before))):
            pads += [b, target - size - b]
        out = network(F.pad(x, pads, value=self.value) if any(pads) else x, *args, **kwargs)
        out = out[(..., *[slice(b, b + size) for b, size in zip(before, spatial)])]
        if isinstance(inputs, MetaTensor):
            meta = MetaTensor([]).copy_meta_from(inputs, copy_attr=False)
            out = convert_to_dst_type(out, meta)[0]
        return out


class AveragingInferer(Inferer):
    """Average class probabilities over several networks and flips (ensemble and flip TTA).

    Args:
        inferer: the inferer each pass runs through (e.g. ``SlidingWindowInferer``).
        members: networks averaged with the one the engine passes in (an ensemble: other
            checkpoints of the same ``network_def``, see :func:`load_members`).
        flip_axes: test-time flips, each a list of spatial dims of the (B, C, W, H) input
            (``[[2], [3]]``: left-right and up-down); the unflipped pass is always included.
        scale_inferers: more inferers each pass also runs through, e.g. the film inferer at
            other film scales (:func:`at_scale`: multi-scale test-time augmentation); each must
            return the output at the input's size, as :class:`WholeFilmInferer` does.

    ``__call__(inputs, network)``: inputs (B, C, W, H) → (B, K, W, H). With no member and
    no flip it returns the wrapped inferer's logits unchanged. Otherwise it returns the
    logarithm of the mean softmax probability over the first ``num_classes`` channels, which
    downstream softmax and argmax read exactly as they read logits (``softmax(log p) = p``),
    followed by the mean of any further channels (the presence logit).
    """

    def __init__(self, inferer: Inferer, members=(), flip_axes=(), num_classes: int = 3, scale_inferers=()):
        super().__init__()
        self.inferer = inferer
        self.scale_inferers = list(scale_inferers)
        self.num_classes = num_classes
        self.members = list(members)
        self.flip_axes = [list(a) for a in flip_axes]
        for axes in self.flip_axes:
            if not axes or any(a < 2 for a in axes):
                raise ValueError(f"flip axes are spatial dims (2 or more) of a (B, C, *spatial) input, got {axes}")

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        if not self.members and not self.flip_axes and not self.scale_inferers:
            return self.inferer(inputs, network, *args, **kwargs)
        total, extra, passes = None, None, 0
        for net, axes, inferer in itertools.product([network, *self.members], [None, *self.flip_axes],
                                                    [self.inferer, *self.scale_inferers]):
            x = inputs if axes is None else torch.flip(inputs, axes)
            out = inferer(x, net, *args, **kwargs).float()
            out = out if axes is None else torch.flip(out, axes)
            # the segmentation channels average as probabilities; channels after them (a presence
            # network's logit, the same at every pixel) average as they are
            prob = torch.softmax(out[:, : self.num_classes], dim=1)
            rest = out[:, self.num_classes:]
            total = prob if total is None else total + prob
            extra = rest if extra is None else extra + rest
            passes += 1
        return torch.cat([torch.log((total / passes).clamp_min(1e-12)), extra / passes], dim=1)


def at_scale(inferer: WholeFilmInferer, scales) -> list[WholeFilmInferer]:
    """Copies of ``inferer`` at each film scale of ``scales`` (multi-scale test-time augmentation:
    ``AveragingInferer(scale_inferers=...)``); a scale equal to the inferer's own is left out, since the
    main pass already runs there."""
    if scales and not isinstance(inferer, WholeFilmInferer):
        raise ValueError(f"test-time scales need the whole-film inferer, not {type(inferer).__name__}")
    out = []
    for scale in scales or []:
        if float(scale) == inferer.scale:
            continue
        film_shape([1, 1], float(scale))  # validates
        other = copy.copy(inferer)
        other.scale = float(scale)
        out.append(other)
    return out


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
