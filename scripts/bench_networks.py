"""Training speed of the bundle's networks on CPU, side by side in one run.

Usage: python scripts/bench_networks.py [--patch 256] [--batch 4] [--steps 5] [--threads N]

Times forward + backward + optimiser step of each network on random (batch, 1, patch, patch)
input, and prints images/s and the ratio to the bundle's default UNet. The networks are built
from the bundle configs themselves (train.json, basic_unet.json), plus BasicUNet with MONAI's
default features for comparison.
"""

from __future__ import annotations

import argparse
import time

import torch
from monai.bundle import ConfigParser
from monai.networks.nets import BasicUNet

from monaifrac.bundle import REPO_BUNDLE

CONFIGS = REPO_BUNDLE / "configs"


def network_from(*files: str) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in files])
    return parser.get_parsed_content("network_def")


def images_per_second(net: torch.nn.Module, x: torch.Tensor, steps: int) -> float:
    opt = torch.optim.AdamW(net.parameters())
    net.train()
    net(x).mean().backward()  # warm-up: first call allocates
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        net(x).mean().backward()
        opt.step()
    return steps * x.shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 1, args.patch, args.patch)
    nets = {
        "UNet (train.json, default)": network_from("train.json"),
        "BasicUNet (basic_unet.json)": network_from("train.json", "basic_unet.json"),
        "BasicUNet (MONAI default features)": BasicUNet(spatial_dims=2, in_channels=1, out_channels=3),
    }
    print(f"patch {args.patch}x{args.patch}, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{args.steps} training steps each")
    rates = {}
    for name, net in nets.items():
        rates[name] = images_per_second(net, x, args.steps)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        print(f"{name:38s} {params:5.2f} M params  {rates[name]:6.1f} img/s")
    base = rates["UNet (train.json, default)"]
    for name, rate in rates.items():
        print(f"ratio {name} / UNet: {rate / base:.2f}")


if __name__ == "__main__":
    main()
