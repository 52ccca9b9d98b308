"""Training speed of the bundle's networks and of the new network's cost levers on CPU, side by side in one run.

Usage: python scripts/bench_networks.py [--size 480 384] [--batch 4] [--steps 3] [--threads N]
                                        [--only NAME ...]

Times forward + backward + optimiser step of each variant on random (batch, 1, H, W) input (the
default 480 x 384: a 454 x 373 film padded to a multiple of 32), best of ``--steps`` after a
warm-up, and prints seconds per image and the ratio to the bundle's default network
(``train.json``: the EfficientNet-Lite0 U-Net with its presence output, float32, channels_last).
The variants are built from the bundle configs and differ from the default in one lever each:

* ``default layout``: torch's contiguous layout instead of channels_last;
* ``bf16 autocast``: the CPU bfloat16 autocast that ``cpu_bf16: auto`` would switch on (in channels_last,
  and in the default layout, where the depthwise convolutions make it far slower);
* ``FlexibleUNet decoder``: MONAI's default decoder channels (256, 128, 64, 32, 16);
* ``frozen stem + blocks 0-2``: no gradient for the encoder's first stride-2/4 layers;
* ``lite1`` / ``lite2``: the larger backbones;
* ``UNet`` / ``BasicUNet``: ``configs/unet.json`` / ``configs/basic_unet.json`` with their own settings
  (bf16 autocast where the CPU has bf16 units).

Only the network's time: loading and augmenting films is ``scripts/bench_train.py``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import torch
from monai.bundle import ConfigParser

from monaifrac.bundle import REPO_BUNDLE
from monaifrac.inferers import cpu_bf16_supported

CONFIGS = REPO_BUNDLE / "configs"


def network_from(*files: str, **overrides) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in files])
    for key, value in overrides.items():
        parser[key] = value
    return parser.get_parsed_content("network_def")


def seconds_per_image(net: torch.nn.Module, x: torch.Tensor, steps: int, channels_last: bool, bf16: bool) -> float:
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], 1e-3)
    net.train()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    best = float("inf")
    for i in range(steps + 1):  # the first (allocating) step is a warm-up
        start = time.perf_counter()
        opt.zero_grad()
        with autocast:
            out = net(x)
        out.float().mean().backward()
        opt.step()
        if i:
            best = min(best, time.perf_counter() - start)
    return best / x.shape[0]


def frozen_early(net: torch.nn.Module) -> torch.nn.Module:
    enc = net.encoder
    for module in [enc._conv_stem, enc._bn0, *enc._blocks[:3]]:
        for p in module.parameters():
            p.requires_grad_(False)
    return net


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[480, 384], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs="+", default=None, help="variants to time (names as printed)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 1, *args.size)
    bf16 = cpu_bf16_supported()
    lite = ("train.json",)
    variants = {  # name: (network builder, channels_last, bf16 autocast)
        "default (train.json)": (lambda: network_from(*lite), True, False),
        "default layout": (lambda: network_from(*lite), False, False),
        "bf16 autocast": (lambda: network_from(*lite), True, True),
        "bf16 autocast, default layout": (lambda: network_from(*lite), False, True),
        "FlexibleUNet decoder": (lambda: network_from(*lite, **{"network_def#decoder_channels": [256, 128, 64, 32, 16]}),
                                 True, False),
        "frozen stem + blocks 0-2": (lambda: frozen_early(network_from(*lite)), True, False),
        "lite1": (lambda: network_from(*lite, backbone="efficientnet-lite1"), True, False),
        "lite2": (lambda: network_from(*lite, backbone="efficientnet-lite2"), True, False),
        "UNet (unet.json)": (lambda: network_from("train.json", "unet.json"), False, bf16),
        "BasicUNet (basic_unet.json)": (lambda: network_from("train.json", "basic_unet.json"), False, bf16),
    }
    chosen = [v for v in variants if args.only is None or v in args.only or v == "default (train.json)"]
    print(f"input {args.batch} x 1 x {args.size[0]} x {args.size[1]}, {torch.get_num_threads()} threads, best of "
          f"{args.steps} training steps each; CPU bf16 units: {bf16}")
    times = {}
    for name in chosen:
        build, cl, autocast = variants[name]
        try:
            net = build()
        except ImportError as err:  # lite1/lite2 without the `lite` extra
            print(f"{name:30s} skipped: {err}")
            continue
        times[name] = seconds_per_image(net, x, args.steps, cl, autocast)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        print(f"{name:30s} {params:5.2f} M params  {times[name]:7.3f} s/image  "
              f"{'channels_last' if cl else 'contiguous'}{', bf16' if autocast else ''}", flush=True)
    base = times["default (train.json)"]
    for name, t in times.items():
        print(f"ratio {name} / default: {t / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
