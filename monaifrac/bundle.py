"""Where the bundle is, which of its configs a run combines, and running them from Python.

The options every bundle command shares (``--network``, ``--sliding-window``, ``--patches``,
``--set``, ``--bundle-root``) are declared here, beside the rule that turns them into override
configs and ids (:func:`run_options`), so ``monaifrac train/evaluate/infer/quantize/average/cv``
(:mod:`monaifrac.bundle_commands`) all read them one way. Nothing here imports torch or MONAI
at module level: ``monaifrac --help`` and a missing input answer before either is loaded.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

REPO_BUNDLE = Path(__file__).resolve().parents[1] / "bundle"
#: --network: the default EfficientNet-Lite U-Net with its backbones, or an earlier network with its own config
NETWORKS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "unet", "basic_unet")
DEFAULT_NETWORK = "efficientnet-lite0"
#: monaifrac.networks.onnx.ENGINES, spelled out so that declaring --engine imports no torch (a test keeps them equal)
ENGINES = ("torch", "onnxruntime", "onnxruntime-int8")


def find_bundle_root() -> str:
    """The bundle folder to use when a config does not get ``bundle_root``.

    ``.`` when run inside a bundle (model-zoo habit: ``cd bundle``), ``bundle`` when run from
    this repository's root, else the bundle beside the installed package.
    """
    if Path("configs/metadata.json").is_file():
        return "."
    if Path("bundle/configs/metadata.json").is_file():
        return "bundle"
    return str(REPO_BUNDLE)


def config_path(name: str, bundle_root: str | Path | None = None) -> str:
    """Path of ``configs/<name>`` of the bundle; a name without a suffix means ``<name>.json``."""
    root = Path(bundle_root) if bundle_root else Path(find_bundle_root())
    return str(root / "configs" / (name if Path(name).suffix else f"{name}.json"))


def run_bundle(config_names: list[str], bundle_root: str | Path | None = None, **overrides) -> None:
    """``python -m monai.bundle run --config_file [configs...] --id value ...``, in this process.

    Args:
        config_names: config names in ``<bundle>/configs`` (``train``, ``evaluate``, ...),
            later ones overriding earlier ones, as with ``--config_file "[...]"``.
        bundle_root: where checkpoints and logs go (``<bundle_root>/models``, ``/eval``);
            the configs are always read from the repository's bundle.
        overrides: config ids and values, e.g. ``{"max_epochs": 2, "dataset_dir": "..."}``.
    """
    from monai.bundle import create_workflow

    files = [config_path(name) for name in config_names]
    if bundle_root is not None:
        overrides["bundle_root"] = str(bundle_root)
    # what monai.bundle.run does (create, run, finalize), with MONAI's config-trust warning left out for
    # this repository's own configs only (see _own_configs)
    with warnings.catch_warnings():
        if _own_configs(files):
            warnings.filterwarnings("ignore", message=_TRUST_WARNING, category=UserWarning)
        workflow = create_workflow(config_file=files, meta_file=config_path("metadata"),
                                   logging_file=config_path("logging.conf"), **overrides)
    workflow.run()
    workflow.finalize()


#: the start of the warning monai.bundle's create_workflow gives every time it parses a config file
_TRUST_WARNING = "parsing config_file "


def _own_configs(files: list[str]) -> bool:
    """True when every config file is one this package ships (``<repository>/bundle/configs``).

    MONAI warns on every run that a config's ``_target_`` and ``$`` values run code
    (GHSA-873f-pvrv-4x83): a warning about configs from an untrusted source. These files come
    with the package, reviewed and tested with it, so they are exactly as trusted as its Python
    code; the warning on every ``monaifrac`` run would only teach users to ignore it. Configs
    from anywhere else (a ``configs/`` folder in the working directory, which
    :func:`find_bundle_root` prefers) keep the warning. ``--set`` values are the user's own
    command line, trusted like the user's shell.
    """
    own = (REPO_BUNDLE / "configs").resolve()
    return all(Path(f).resolve().parent == own for f in files)


def require_model(model_file: str | Path) -> None:
    """Stop a bundle run with one line on stderr (exit status 2) when ``model_file`` is missing.

    Called first in ``initialize`` of ``inference.json`` and ``evaluate.json``. It raises
    ``SystemExit`` because MONAI wraps any ``Exception`` of a config expression in its own
    traceback ("Failed to evaluate ..."), which names neither the file nor the remedy.
    """
    import sys

    path = Path(model_file)
    if path.is_file():
        return
    print(f"error: {_no_model(path)}", file=sys.stderr)
    raise SystemExit(2)


def _no_model(path: Path) -> str:
    return (f"no model file at {path}: train one (`monaifrac train DATASET_DIR`), or name an existing one "
            f"with --model_file PATH (monai.bundle) or --model PATH (monaifrac)")


def parse_overrides(pairs: list[str] | None) -> dict:
    """``["max_epochs=3", "patch_size=[128,128]"]`` → ``{"max_epochs": 3, "patch_size": [128, 128]}``.

    Values are read as JSON where they parse as JSON, else kept as strings.
    """
    import json

    result = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"override {pair!r} is not KEY=VALUE")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result


def add_bundle_options(p: argparse.ArgumentParser, *, bundle_root: bool = True, patches: bool = False) -> None:
    """The options of a bundle run, on a command's parser.

    Args:
        bundle_root: offer ``--bundle-root`` (not for ``cv``, whose bundle roots are its fold folders).
        patches: offer ``--patches`` (commands that train); elsewhere ``args.patches`` is False.
    """
    if bundle_root:
        p.add_argument("--bundle-root", help="where models/ and eval/ are (default: the bundle of this repository)")
    p.add_argument("--network", choices=NETWORKS, default=DEFAULT_NETWORK,
                   help="network definition: the default, an EfficientNet-Lite U-Net with a presence output "
                        "(lite1/lite2 set its backbone), or the earlier UNet/BasicUNet (adds configs/<name>.json; "
                        "their weights load only with it)")
    if patches:
        p.add_argument("--patches", action="store_true",
                       help="train on random patches (patch_size, num_samples, crop_ratios) instead of whole films "
                            "(adds configs/patches.json)")
    else:
        p.set_defaults(patches=False)
    p.add_argument("--sliding-window", action="store_true",
                   help="see each film through 256 x 256 windows instead of whole (adds configs/sliding_window.json)")
    p.add_argument("--set", nargs="+", metavar="ID=VALUE", help="other config overrides, e.g. patch_size=[128,128]")


def variant_configs(network: str = DEFAULT_NETWORK, patches: bool = False, sliding_window: bool = False) -> list[str]:
    """The override configs (names in ``configs/``) the options select, in the order they apply."""
    return ([network] if network in ("unet", "basic_unet") else []) + (["patches"] if patches else []) + \
        (["sliding_window"] if sliding_window else [])


def network_overrides(network: str = DEFAULT_NETWORK) -> dict:
    """The default network with another EfficientNet-Lite backbone: only the ``backbone`` id changes."""
    return {"backbone": network} if network.startswith("efficientnet-lite") and network != DEFAULT_NETWORK else {}


def run_options(args: argparse.Namespace, **named) -> tuple[list[str], dict]:
    """The override configs and the config ids of a run, from the options :func:`add_bundle_options` declared.

    Args:
        args: parsed options (``network``, ``patches``, ``sliding_window``, ``set``).
        named: ids the command sets from its own options (``max_epochs=args.epochs``, ...); None
            means "the config's default" and is dropped. ``--set`` pairs come last and win.

    Returns:
        (configs to add after the command's own, ids and values for :func:`run_bundle`).
    """
    configs = variant_configs(args.network, patches=args.patches, sliding_window=args.sliding_window)
    overrides = {k: v for k, v in named.items() if v is not None}
    overrides.update(network_overrides(args.network))
    overrides.update(parse_overrides(args.set))
    return configs, overrides



def require_models(model_files: list[str] | tuple = ()) -> None:
    """:func:`require_model` for the weights a command line names, before MONAI or any config is loaded.

    Raises:
        FileNotFoundError: one of them is missing (exit status 2, one line naming it and the remedy).
    """
    for item in model_files:
        if item and not Path(item).is_file():
            raise FileNotFoundError(_no_model(Path(item)))
