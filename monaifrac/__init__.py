"""monaifrac: fracture and bone segmentation on musculoskeletal X-rays with MONAI.

Stages, one home each: :mod:`monaifrac.data` (FracAtlas/Labelme → prepared NIfTI +
datalist), :mod:`monaifrac.io` (films in one pixel frame), the MONAI Bundle in ``bundle/``
(training, evaluation, inference), :mod:`monaifrac.visualize` (overlays).
"""

__version__ = "0.1.0"

import importlib as _importlib

# Bundle configs say "$import monaifrac" and then "monaifrac.datalist.load_split(...)"; each
# submodule is imported on first use (PEP 562) so that "import monaifrac" (and so the
# ``monaifrac`` command's --help) loads no torch and no MONAI.
_SUBMODULES = frozenset({
    "benchmark", "bundle", "bundle_commands", "checkpoints", "cli", "crossval", "data", "datalist", "dicom",
    "distributed", "engines", "errors", "evaluation", "handlers", "inference", "inferers", "io", "losses", "memory",
    "metrics", "networks", "samplers", "serving", "transforms", "visualize"})


def __getattr__(name):
    if name in _SUBMODULES:
        try:
            return _importlib.import_module(f"monaifrac.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"monaifrac.{name}":  # a module it imports is missing: say which
                raise
    raise AttributeError(f"module 'monaifrac' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES)
