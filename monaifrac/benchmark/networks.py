"""The training step of the network alone, and of its cost levers, side by side (``benchmark train --networks``).

Times forward + backward + optimiser step of each variant on random (batch, 1, H, W) input (default
480 x 384: a 454 x 373 film padded to a multiple of 32), ``--steps`` steps after one warm-up step, and
reports the median seconds per image and the ratio to the bundle's default network (``train.json``:
the EfficientNet-Lite0 U-Net with its presence output, float32, channels_last). Each variant differs
from the default in one lever:

* ``default layout``: torch's contiguous layout instead of channels_last;
* ``bf16 autocast``: the CPU bfloat16 autocast that ``cpu_bf16: auto`` would switch on (in channels_last,
  and in the default layout);
* ``FlexibleUNet decoder``: MONAI's default decoder channels (256, 128, 64, 32, 16);
* ``frozen stem + blocks 0-2``: no gradient for the encoder's first stride-2/4 layers;
* ``lite1`` / ``lite2``: the larger backbones (the ``lite`` extra);
* ``UNet`` / ``BasicUNet``: ``configs/unet.json`` / ``configs/basic_unet.json`` with their own settings
  (bf16 autocast where the CPU has bf16 units).

Only the network's time: loading and augmenting films is the pipeline's (``benchmark train PREPARED``).
"""

from __future__ import annotations

import contextlib

import torch

from monaifrac.benchmark import timing
from monaifrac.bundle import REPO_BUNDLE

CONFIGS = REPO_BUNDLE / "configs"
DEFAULT = "default (train.json)"


def network_from(*files: str, **overrides) -> torch.nn.Module:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in files])
    for key, value in overrides.items():
        parser[key] = value
    return parser.get_parsed_content("network_def")


def step_seconds(net: torch.nn.Module, x: torch.Tensor, steps: int, channels_last: bool, bf16: bool) -> list[float]:
    """Seconds of each of ``steps`` training steps (after one warm-up step) of ``net`` on ``x``."""
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], 1e-3)
    net.train()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step():
        opt.zero_grad()
        with autocast:
            out = net(x)
        out.float().mean().backward()
        opt.step()

    return timing.repeat(step, steps, warmup=1)


def frozen_early(net: torch.nn.Module) -> torch.nn.Module:
    enc = net.encoder
    for module in [enc._conv_stem, enc._bn0, *enc._blocks[:3]]:
        for p in module.parameters():
            p.requires_grad_(False)
    return net


def variants(bf16: bool, overrides: dict) -> dict:
    """name: (network builder, channels_last, bf16 autocast)."""
    lite = ("train.json",)
    net = lambda *files, **kw: network_from(*files, **{**overrides, **kw})  # noqa: E731
    return {
        DEFAULT: (lambda: net(*lite), True, False),
        "default layout": (lambda: net(*lite), False, False),
        "bf16 autocast": (lambda: net(*lite), True, True),
        "bf16 autocast, default layout": (lambda: net(*lite), False, True),
        "FlexibleUNet decoder": (lambda: net(*lite, **{"network_def#decoder_channels": [256, 128, 64, 32, 16]}),
                                 True, False),
        "frozen stem + blocks 0-2": (lambda: frozen_early(net(*lite)), True, False),
        "lite1": (lambda: net(*lite, backbone="efficientnet-lite1"), True, False),
        "lite2": (lambda: net(*lite, backbone="efficientnet-lite2"), True, False),
        "UNet (unet.json)": (lambda: net("train.json", "unet.json"), False, bf16),
        "BasicUNet (basic_unet.json)": (lambda: net("train.json", "basic_unet.json"), False, bf16),
    }


def run(size: tuple[int, int], batch: int, steps: int, only: list[str] | None, overrides: dict,
        progress=lambda line: None) -> dict:
    """{variant: {"s_per_image": timing.summary, "params_m", "layout", "bf16", "over_default"} | {"skipped": why}}."""
    from monaifrac.inferers import cpu_bf16_supported

    torch.manual_seed(0)
    x = torch.rand(batch, 1, *size)
    table = variants(cpu_bf16_supported(), overrides)
    unknown = set(only or []) - set(table)
    if unknown:
        raise ValueError(f"--only: unknown variant(s) {sorted(unknown)}; choose from {list(table)}")
    out: dict = {}
    for name, (build, channels_last, autocast) in table.items():
        if only and name not in only and name != DEFAULT:
            continue
        try:
            net = build()
        except ImportError as err:  # lite1/lite2 without the `lite` extra
            out[name] = {"skipped": str(err)}
            continue
        per_image = [t / batch for t in step_seconds(net, x, steps, channels_last, autocast)]
        out[name] = {"s_per_image": timing.summary(per_image), "params_m": sum(p.numel() for p in net.parameters())
                     / 1e6, "layout": "channels_last" if channels_last else "contiguous", "bf16": autocast}
        progress(f"{name}: {out[name]['s_per_image']['median']:.3f} s an image")
    base = out[DEFAULT]["s_per_image"]["median"]
    for r in out.values():
        if "s_per_image" in r:
            r["over_default"] = r["s_per_image"]["median"] / base
    return out
