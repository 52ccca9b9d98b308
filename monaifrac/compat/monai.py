"""MONAI internals, each behind one function. Checked against MONAI 1.6.1."""

from __future__ import annotations

from typing import TYPE_CHECKING

CHECKED_AGAINST = "1.6.1"  # the version each function below was read against (tests/unit/test_compat.py)

if TYPE_CHECKING:  # pragma: no cover
    from ignite.handlers import Checkpoint, EarlyStopping
    from monai.handlers import CheckpointSaver, EarlyStopHandler

# what monai.handlers.CheckpointSaver (1.6.1) calls its three ignite Checkpoints
_SAVER_CHECKPOINTS = {"final": "_final_checkpoint", "key_metric": "_key_metric_checkpoint",
                      "interval": "_interval_checkpoint"}

# the sub-modules monai.networks.blocks.MBConvBlock (1.6.1) builds in __init__ and its forward uses:
# monaifrac.networks.efficientnet_lite.LiteMBConvBlock runs them in its own forward (ReLU6, no
# squeeze-and-excitation), and they name the keys of the ImageNet state dicts it loads
MBCONV_PARTS = ("_expand_conv", "_expand_conv_padding", "_bn0", "_depthwise_conv", "_depthwise_conv_padding",
                "_bn1", "_project_conv", "_project_conv_padding", "_bn2", "_swish")


def saver_checkpoint(saver: CheckpointSaver, kind: str) -> Checkpoint | None:
    """One of the ignite ``Checkpoint`` objects of a MONAI ``CheckpointSaver``, or None where it saves no such file.

    ``kind``: ``"final"`` (``save_final``), ``"key_metric"`` (``save_key_metric``, the best model) or
    ``"interval"`` (``save_interval``). MONAI 1.6.1 keeps them in the private ``_final_checkpoint``,
    ``_key_metric_checkpoint`` and ``_interval_checkpoint``.
    """
    return getattr(saver, _SAVER_CHECKPOINTS[kind])


def saver_checkpoints(saver: CheckpointSaver) -> list[Checkpoint]:
    """Every ignite ``Checkpoint`` a MONAI ``CheckpointSaver`` writes with (final, key metric, interval)."""
    found = (saver_checkpoint(saver, kind) for kind in _SAVER_CHECKPOINTS)
    return [c for c in found if c is not None]


def early_stopping(handler: EarlyStopHandler) -> EarlyStopping | None:
    """The ignite ``EarlyStopping`` behind a MONAI ``EarlyStopHandler`` (its ``counter`` and ``best_score``),
    or None before ``set_trainer``. MONAI 1.6.1 keeps it in the private ``_handler``.
    """
    return handler._handler


# -- monai.networks.nets.efficientnet (1.6.1): the private helpers EfficientNet-Lite is built with


def same_padder(conv, image_size: list[int]):
    """The padding layer that gives ``conv`` TensorFlow's "same" output size on an image of ``image_size``.
    ``monai.networks.nets.efficientnet._make_same_padder`` (private in MONAI 1.6.1)."""
    from monai.networks.nets.efficientnet import _make_same_padder

    return _make_same_padder(conv, image_size)


def output_image_size(image_size: list[int], stride) -> list[int]:
    """The size of an image after a "same"-padded layer of ``stride``.
    ``monai.networks.nets.efficientnet._calculate_output_image_size`` (private in MONAI 1.6.1)."""
    from monai.networks.nets.efficientnet import _calculate_output_image_size

    return _calculate_output_image_size(image_size, stride)


def round_filters(filters: int, width: float | None, divisor: float) -> int:
    """EfficientNet's channel count scaled by ``width`` and rounded to a multiple of ``divisor``.
    ``monai.networks.nets.efficientnet._round_filters`` (private in MONAI 1.6.1)."""
    from monai.networks.nets.efficientnet import _round_filters

    return _round_filters(filters, width, divisor)


def round_repeats(repeats: int, depth: float | None) -> int:
    """EfficientNet's block count scaled by ``depth``, rounded up.
    ``monai.networks.nets.efficientnet._round_repeats`` (private in MONAI 1.6.1)."""
    from monai.networks.nets.efficientnet import _round_repeats

    return _round_repeats(repeats, depth)
