"""The few MONAI-style transforms MONAI lacks, in array form and dictionary form.

One module per kind, as in ``monai.transforms``; every name is importable from here, which is
the name the bundle's configs use (``monaifrac.transforms.ArgMaxd``).
"""

from monaifrac.transforms.compose import UntrackedCompose
from monaifrac.transforms.intensity import (PercentileWindowd, ScaleIntensityRangePercentiles,
                                            ScaleIntensityRangePercentilesd, ScaleIntensityWindowd,
                                            percentile_window)
from monaifrac.transforms.io import SaveOverlay, SaveOverlayd
from monaifrac.transforms.post import (ArgMax, ArgMaxd, FractureScore, FractureScored, GateFracture, GateFractured,
                                       SplitPresence, SplitPresenced, ThresholdFracture, ThresholdFractured,
                                       fuse_presence)
from monaifrac.transforms.spatial import (LimitLongSide, LimitLongSided, film_shape, long_side_shape, network_side,
                                          scaled_crop)

__all__ = ["UntrackedCompose", "PercentileWindowd", "ScaleIntensityRangePercentiles", "ScaleIntensityRangePercentilesd",
           "ScaleIntensityWindowd", "percentile_window", "SaveOverlay", "SaveOverlayd", "ArgMax", "ArgMaxd",
           "FractureScore", "FractureScored", "GateFracture", "GateFractured", "SplitPresence", "SplitPresenced",
           "ThresholdFracture", "ThresholdFractured", "fuse_presence", "LimitLongSide", "LimitLongSided",
           "long_side_shape", "film_shape", "network_side", "scaled_crop"]
