"""Where the bundle is, and running its configs from Python (``monaifrac train/evaluate/infer``)."""

from __future__ import annotations

from pathlib import Path

REPO_BUNDLE = Path(__file__).resolve().parents[1] / "bundle"


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
    from monai.bundle import run

    files = [config_path(name) for name in config_names]
    if bundle_root is not None:
        overrides["bundle_root"] = str(bundle_root)
    run(config_file=files, meta_file=config_path("metadata"),
        logging_file=config_path("logging.conf"), **overrides)


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
    print(f"error: no model file at {path}: train one (`monaifrac train DATASET_DIR`), or name an existing one "
          f"with --model_file PATH (monai.bundle) or --model PATH (monaifrac)", file=sys.stderr)
    raise SystemExit(2)


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
