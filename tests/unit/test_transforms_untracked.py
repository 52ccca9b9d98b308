"""monaifrac.transforms.UntrackedCompose: random transforms on plain tensors, MONAI's tracking restored after."""

from __future__ import annotations

import pytest
import torch
from monai.data import CacheDataset, MetaTensor, get_track_meta
from monai.transforms import Compose, EnsureChannelFirstd, Lambdad, RandFlipd, RandRotated, ScaleIntensityd

from monaifrac.transforms import UntrackedCompose


def item() -> dict:
    image = MetaTensor(torch.arange(64.0).reshape(1, 8, 8), meta={"filename_or_obj": "film.nii.gz"})
    return {"image": image, "label": MetaTensor((image > 30).to(torch.uint8))}


def augmentation() -> list:
    return [RandFlipd(keys=["image", "label"], prob=1.0, spatial_axis=0),
            RandRotated(keys=["image", "label"], range_x=0.3, prob=1.0, mode=["bilinear", "nearest"])]


def test_outputs_are_plain_tensors_with_the_same_pixels_as_tracked_transforms():
    tracked, untracked = Compose(augmentation()), UntrackedCompose(augmentation())
    tracked.set_random_state(seed=3)
    untracked.set_random_state(seed=3)
    a, b = tracked(item()), untracked(item())
    assert isinstance(a["image"], MetaTensor) and a["image"].applied_operations  # MONAI records every operation
    assert type(b["image"]) is torch.Tensor and type(b["label"]) is torch.Tensor
    assert torch.allclose(a["image"].as_tensor(), b["image"]) and torch.equal(a["label"].as_tensor(), b["label"])
    assert get_track_meta() is True


def test_tracking_is_restored_when_a_transform_fails():
    def fail(x):
        raise RuntimeError("broken film")

    with pytest.raises(RuntimeError, match="applying transform"):  # MONAI wraps the error
        UntrackedCompose([Lambdad(keys="image", func=fail)])(item())
    assert get_track_meta() is True


def test_cache_dataset_caches_the_tracked_part_and_stops_at_the_untracked_compose():
    films = [{"image": torch.rand(8, 8)} for _ in range(3)]
    transform = Compose([EnsureChannelFirstd(keys="image", channel_dim="no_channel"), ScaleIntensityd(keys="image"),
                         UntrackedCompose([RandFlipd(keys="image", prob=1.0, spatial_axis=0)])])
    dataset = CacheDataset(films, transform=transform, progress=False)
    assert all(isinstance(cached["image"], MetaTensor) and cached["image"].shape == (1, 8, 8) for cached in dataset._cache)
    out = dataset[0]["image"]
    assert type(out) is torch.Tensor
    assert torch.equal(out, torch.flip(dataset._cache[0]["image"].as_tensor(), dims=[1]))
