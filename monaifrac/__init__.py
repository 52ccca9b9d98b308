"""monaifrac: fracture and bone segmentation on musculoskeletal X-rays with MONAI.

Stages, one home each: :mod:`monaifrac.data` (FracAtlas/Labelme → prepared NIfTI +
datalist), :mod:`monaifrac.io` (films in one pixel frame), the MONAI Bundle in ``bundle/``
(training, evaluation, inference), :mod:`monaifrac.visualize` (overlays).
"""

__version__ = "0.1.0"

import importlib as _importlib

_SUBMODULES = {"bundle", "checkpoints", "cli", "crossval", "data", "datalist", "distributed", "engines", "evaluation",
               "handlers", "inference", "inferers", "io", "losses", "memory", "metrics", "networks", "samplers", "transforms",
               "visualize"}


def __getattr__(name):
    # Bundle configs say "$import monaifrac" and then "monaifrac.datalist.load_split(...)";
    # importing submodules on first use keeps that working without importing torch eagerly.
    if name in _SUBMODULES:
        return _importlib.import_module(f"monaifrac.{name}")
    raise AttributeError(f"module 'monaifrac' has no attribute {name!r}")
