"""monaifrac.distributed: the shutdown that multi_gpu_train.json's finalize calls."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from monaifrac.distributed import release_ddp, shutdown


@pytest.fixture
def one_rank_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def _trained_ddp() -> DistributedDataParallel:
    net = DistributedDataParallel(torch.nn.Conv2d(1, 3, 3))
    net(torch.randn(2, 1, 16, 16)).mean().backward()
    return net


def test_release_drops_reducer_and_keeps_forward(one_rank_group):
    net = _trained_ddp()
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        before = net.module(x)
    release_ddp(net)
    assert not hasattr(net, "reducer") and not hasattr(net, "logger")
    with torch.no_grad():
        torch.testing.assert_close(net.module(x), before)  # same weights, still callable


def test_release_leaves_plain_module_alone():
    net = torch.nn.Conv2d(1, 3, 3)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    release_ddp(net)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, state[k])


def test_shutdown_destroys_group_and_releases(one_rank_group):
    net = _trained_ddp()
    shutdown(net)
    assert not dist.is_initialized()
    assert not hasattr(net, "reducer")


def test_shutdown_without_group_is_noop():
    assert not dist.is_initialized()
    shutdown(torch.nn.Conv2d(1, 1, 1))  # a single-process run's finalize must not fail
    assert not dist.is_initialized()


def test_shutdown_releases_every_live_ddp_module(one_rank_group):
    net, critic = _trained_ddp(), _trained_ddp()  # e.g. a GAN's segmenter and discriminator
    shutdown(net)
    assert not hasattr(net, "reducer") and not hasattr(critic, "reducer")


def test_ddp_if_distributed(one_rank_group):
    from monaifrac.distributed import ddp_if_distributed

    wrapped = ddp_if_distributed(torch.nn.Conv2d(1, 1, 1), "cpu")
    assert isinstance(wrapped, DistributedDataParallel)
    dist.destroy_process_group()
    plain = torch.nn.Conv2d(1, 1, 1)
    assert ddp_if_distributed(plain, "cpu") is plain  # a single-process run keeps the bare module
