"""Percentile scaling in two steps (the window when a film is cached, the scaling when it is drawn) equals
the one-step ScaleIntensityRangePercentilesd that inference runs."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from monaifrac.transforms import (LimitLongSided, PercentileWindowd, ScaleIntensityRangePercentilesd,
                                  ScaleIntensityWindowd, UntrackedCompose, percentile_window)

ARGS = {"b_min": 0.0, "b_max": 1.0, "clip": True}


def film(dtype: torch.dtype, top: int, shape=(1, 454, 373)) -> MetaTensor:
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, top + 1, shape, generator=g, dtype=torch.int32).to(dtype)
    return MetaTensor(pixels, meta={"filename_or_obj": "film.nii.gz"})


@pytest.mark.parametrize("dtype, top", [(torch.uint8, 255), (torch.uint16, 4095), (torch.float32, 1)])
def test_window_then_scaling_equals_one_step_scaling(dtype, top):
    image = film(dtype, top)
    one_step = ScaleIntensityRangePercentilesd("image", 0.5, 99.5, **ARGS)({"image": image.float()})["image"]
    windowed = PercentileWindowd("image", 0.5, 99.5)({"image": image})
    assert windowed["image"] is image  # the film is cached as it is, at its own bit depth
    lo, hi = windowed["image_window"]
    assert isinstance(lo, float) and isinstance(hi, float) and lo < hi
    two_steps = ScaleIntensityWindowd("image", **ARGS)(windowed)
    assert set(two_steps) == {"image"}  # the window is consumed, never collated into a batch
    assert two_steps["image"].dtype == torch.float32
    assert torch.equal(two_steps["image"].as_tensor(), one_step.as_tensor())
    assert two_steps["image"].meta["filename_or_obj"] == "film.nii.gz"


def test_the_window_is_the_film_s_as_read_not_the_resampled_scan_s():
    """Inference takes the window before its inferer brings a scan to the common scale; the cache does too."""
    scan = film(torch.uint8, 255, shape=(1, 1800, 1400))
    scan[0, :40] = 255  # a bright marker strip: its share of the pixels changes when the scan is resampled
    cached = LimitLongSided("image", 480, 454)(PercentileWindowd("image", 0.5, 99.5)({"image": scan}))
    assert cached["image"].dtype == torch.uint8 and max(cached["image"].shape[1:]) == 454
    assert cached["image_window"] == percentile_window(scan.float(), 0.5, 99.5)


def test_untracked_scaling_gives_a_plain_tensor():
    windowed = PercentileWindowd("image", 0.5, 99.5)({"image": film(torch.uint8, 255)})
    out = UntrackedCompose([ScaleIntensityWindowd("image", **ARGS)])(windowed)
    assert type(out["image"]) is torch.Tensor and out["image"].dtype == torch.float32


def test_scaling_without_a_window_says_which_transform_is_missing():
    with pytest.raises(KeyError, match="PercentileWindowd must run before"):
        ScaleIntensityWindowd("image", **ARGS)({"image": film(torch.uint8, 255)})
    with pytest.raises(ValueError, match="percentiles"):
        PercentileWindowd("image", 99.5, 0.5)
