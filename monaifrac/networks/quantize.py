"""Int8 ONNX for the CPU: the network's ONNX file, statically quantized by ONNX Runtime.

The ``onnxruntime-int8`` engine (:mod:`monaifrac.networks.onnx`) runs ``<stem>.<hash>.int8.onnx``
beside the weights. :func:`quantize_weights` makes it: the float32 ONNX file of the weights (the
``onnxruntime`` engine's, exported if missing), quantized by ``onnxruntime.quantization.quantize_static``
in QDQ form, weights int8 per output channel, activations uint8 per tensor with the ranges seen on
calibration films (min/max).

Why min/max and not a percentile or entropy range: the fracture class lives in the largest logits of a
few pixels; clipping the top of a range removes exactly those (on the shipped weights a 99.999th
percentile calibration left valid dice_pos 0.005; min/max gives 0.362 against float32's 0.348, the
model card's levers table).

Calibration films are training films (:func:`calibration_films`), never the films scored afterwards,
seen exactly as inference sees them: the inference preprocessing, then the film inferer's scaling and
padding (:func:`network_inputs`).
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from monaifrac.networks.onnx import INT8_SUFFIX, EngineError, OnnxRuntimeNetwork, weights_hash

logger = logging.getLogger(__name__)


def calibration_films(dataset_dir: str | os.PathLike, n: int = 48, seed: int = 0) -> list[str]:
    """``n`` training films of a ``monaifrac prepare`` folder, half fractured, drawn with ``seed``.

    Returns their image paths (``images/<id>.nii.gz``). Fewer fractured (or normal) films than half of
    ``n`` are made up from the other kind.
    """
    from monaifrac.datalist import load_split

    if n < 1:
        raise ValueError(f"calibration needs at least one film, got n={n}")
    items = load_split(dataset_dir, "train")
    fractured = [d for d in items if d.get("fractured")]
    normal = [d for d in items if not d.get("fractured")]
    rng = random.Random(seed)
    k = min(len(fractured), n // 2)
    chosen = rng.sample(fractured, k) + rng.sample(normal, min(len(normal), n - k))
    if len(chosen) < n:
        rest = [d for d in fractured if d not in chosen]
        chosen += rng.sample(rest, min(len(rest), n - len(chosen)))
    return [str(d["image"]) for d in chosen]


def network_inputs(loader: Iterable[dict], inferer: Callable, image_key: str = "image") -> Iterator[np.ndarray]:
    """The arrays the network receives for each batch of ``loader``, through ``inferer``.

    The inferer runs with a stand-in network that records its input and returns zero logits, so the
    arrays carry the inferer's own scaling and padding (a scan scaled to the common long side, a film
    padded to a multiple of 32): (B, 1, H, W) float32 each.
    """
    seen: list[np.ndarray] = []

    def record(x: torch.Tensor) -> torch.Tensor:
        data = x.as_tensor() if hasattr(x, "as_tensor") else x
        seen.append(np.ascontiguousarray(data.detach().to("cpu", torch.float32).numpy()))
        return torch.zeros((x.shape[0], 1, *x.shape[2:]), dtype=torch.float32, device=x.device)

    for batch in loader:
        with torch.no_grad():
            inferer(batch[image_key], record)
        yield from seen
        seen.clear()


def quantize_onnx(source: str | os.PathLike, target: str | os.PathLike, inputs: Iterable[np.ndarray],
                  input_name: str = "image") -> dict:
    """Statically quantize the float32 ONNX file ``source`` into ``target`` (QDQ, int8 weights per
    channel, uint8 activations, min/max ranges over ``inputs``), atomically.

    Returns ``{"films": n}``, the number of calibration arrays read.
    """
    try:
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise EngineError("int8 quantization needs onnxruntime: pip install onnxruntime") from None

    arrays = list(inputs)  # 48 films of 384 x 480: 35 MB
    target = Path(target)
    if not arrays:
        raise EngineError(f"no calibration film reached the network: {target} not written")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.arrays = iter(arrays)

        def get_next(self):
            array = next(self.arrays, None)
            return None if array is None else {input_name: array}

    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=target.parent) as tmp:
        prepared, part = Path(tmp) / "prepared.onnx", Path(tmp) / target.name
        # shape inference and graph folding first, as ONNX Runtime asks of a model before quantization
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(max(level, logging.WARNING))  # the quantizer logs each scale it widens, on the root logger
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(part), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        finally:
            root.setLevel(level)
        os.chmod(part, 0o644)
        os.replace(part, target)
    return {"films": sum(len(a) for a in arrays)}


def quantize_weights(network: torch.nn.Module, model_file: str | os.PathLike, loader: Iterable[dict],
                     inferer: Callable) -> Path:
    """Write ``<stem>.<hash>.int8.onnx`` beside ``model_file`` for its weights, calibrated on ``loader``.

    Args:
        network: the network ``model_file``'s weights belong to (they are loaded into it).
        model_file: a ``model.pt`` or training checkpoint.
        loader: the inference dataloader over the calibration films (dicts with ``"image"``).
        inferer: the film inferer inference uses (its scaling and padding shape the calibration arrays).

    Returns the int8 file's path. Int8 files of earlier weights beside it are removed.
    """
    from monaifrac.checkpoints import model_state, read_checkpoint

    model_file = Path(model_file)
    network.load_state_dict(model_state(read_checkpoint(model_file), model_file))
    network = network.to("cpu", torch.float32).eval()
    fp32 = OnnxRuntimeNetwork(network, cache_dir=model_file.parent, name=model_file.stem).onnx_path()
    target = model_file.parent / f"{model_file.stem}.{weights_hash(network)}{INT8_SUFFIX}"
    counts = quantize_onnx(fp32, target, network_inputs(loader, inferer))
    for old in model_file.parent.glob(f"{model_file.stem}.*{INT8_SUFFIX}"):
        if old != target:
            old.unlink(missing_ok=True)
    logger.info("wrote %s, calibrated on %d films", target, counts["films"])
    return target
