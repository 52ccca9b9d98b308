"""Every bundle mode is its base config plus the differences its override file states, and nothing else.

A mode is ``train.json`` or ``inference.json`` with override files after it, merged as
``monai.bundle run --config_file "[...]"`` merges them (``+`` ids append to lists and merge into
dicts), with ``%`` macros and relative ids resolved. Its whole config (pre- and post-processing,
handlers, ``setup``/``initialize``/``run``/``finalize``, every id) is compared with the base, and the
differences must be exactly the ones listed in :data:`TRAIN_MODES` / :data:`INFERENCE_MODES`. An id
is compared where it is defined; a reference (``"@lr_scheduler"``) is compared by the id it names,
so a change shows once, where it is made. List items are matched in order (``difflib``), so an
override that appends to or wraps a base list (``"+imports"``, ``["...", "@setup", "..."]``) differs
by the items it adds, while one that copies a base list and drifts from it differs item by item.

A difference reads ``~ id`` (a changed value; a component replaced by another one, with another
``_target_`` and most arguments changed; a list that shares no item with the base's), ``+ id`` (added;
a list item with its ``_target_`` or reference) or ``- id`` (removed).
"""

from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "bundle" / "configs"

#: values fitted to the shipped weights (monaifrac calibrate) and the gate they ship with: training's own
#: validation may use others (its key metric is taken without the gate, on the network's own score)
TUNED = {"~ presence_fusion", "~ presence_threshold", "~ presence_gate"}

#: override files on train.json → the differences they make
TRAIN_MODES: dict[tuple[str, ...], set[str]] = {
    # its memory_format (channels_last) is train.json's; it differs after unet.json or basic_unet.json
    ("gpu_train",): {
        "+ compile", "+ cache_workers", "+ cache_to_device",
        "+ train#crop_index_transforms#1 @cache_to_device", "+ validate#crop_index_transforms#0 @cache_to_device",
        "~ train#dataset#num_workers", "~ train#dataloader#_target_", "~ train#dataloader#num_workers",
        "+ train#trainer#compile",
        "~ validate#dataset#num_workers", "~ validate#dataloader#_target_", "~ validate#dataloader#num_workers",
    },
    ("multi_gpu_train",): {
        "~ device", "~ train#sampler", "+ validate#dataloader#sampler",
        "+ initialize#0", "+ initialize#2",  # the process group before the shared setup, quiet ranks after it
        "+ finalize#1",  # the DDP shutdown after the base's finalize
    },
    ("patches",): {
        "+ num_samples", "+ crop_ratios", "~ film_size",
        "~ train#crop_index_transforms",  # scans at their own scale, class indices for the crops
        # nor enlarged after the cache
        "- train#scale_transforms#0 monaifrac.transforms.LimitLongSided", "- train#scale_transforms#1 SpatialPadd",
        "~ train#random_transforms#0#_disabled_", "~ train#random_transforms#0#spatial_size",
        "~ train#random_transforms#0#ratios", "~ train#random_transforms#0#num_samples",
        "+ train#random_transforms#0#indices_key",
        "~ train#random_transforms#5#min_zoom", "~ train#random_transforms#5#max_zoom",
        "~ train#dataloader#sampler", "~ train#dataloader#shuffle",
    },
    ("train_gan",): {
        "+ adv_weight", "+ adv_criterion", "+ adv_warmup_epochs", "+ d_learning_rate",
        "+ discriminator_def", "+ discriminator", "+ d_optimizer",
        "+ train_state#discriminator", "+ train_state#d_optimizer",
        "+ train_log_keys#1", "+ train_log_keys#2", "+ train_log_keys#3", "+ train_log_keys#4", "+ train_log_keys#5",
        "~ train#trainer#_target_", "+ train#trainer#discriminator", "+ train#trainer#d_optimizer",
        "+ train#trainer#adv_weight", "+ train#trainer#adv_criterion", "+ train#trainer#adv_warmup_epochs",
        "+ train#trainer#num_classes",
    },
    ("lr_plateau",): {"~ lr_scheduler", "~ lr_step_transform"},
    ("unet",): {
        "~ network_def", "~ cpu_bf16", "+ engine", "~ presence_threshold", "~ memory_format",
        "+ max_film_pixels", "+ large_film_window", "~ film_inferer#divisor", "+ film_inferer#max_pixels",
        "+ film_inferer#fallback", "- film_inferer#max_side", "- film_inferer#side", "- film_inferer#scale",
    },
    ("basic_unet",): {"~ network_def", "~ cpu_bf16", "+ engine", "~ memory_format"},
    ("sliding_window",): {"~ film_inferer"},
    ("evaluate",): {
        "+ eval_part", "+ eval_max_items", "+ model_file", "~ validate#datalist", "~ validate#dataset#cache_rate",
        "+ validate#additional_metrics#names#7", "+ validate#additional_metrics#names#8",
        "~ validate#handlers", "~ initialize", "~ run", "- finalize#0",
    } | TUNED,
    ("update_bn",): {
        "+ model_file", "+ output_file", "~ pretrained", "~ activation_checkpointing",
        "~ initialize", "~ run", "- finalize#0",
    },
}

#: override files on inference.json → the differences they make
INFERENCE_MODES: dict[tuple[str, ...], set[str]] = {
    ("multi_gpu_inference",): {
        "~ device", "+ dataloader#sampler", "+ initialize#0", "+ initialize#2", "+ finalize",
    },
    ("sliding_window",): {"~ film_inferer"},
    ("quantize",): {
        "+ imports#3", "+ calibration_films", "+ calibration_seed", "~ input_files", "~ output_dir",
        "~ initialize", "~ run",
    },
    ("unet",): TRAIN_MODES[("unet",)] - {"+ engine"} | {"~ engine"},
    ("basic_unet",): TRAIN_MODES[("basic_unet",)] - {"+ engine"} | {"~ engine"},
}

#: combinations the model card documents: each makes the union of its parts' differences
COMBINED_TRAIN_MODES = [("unet", "patches"), ("train_gan", "multi_gpu_train"), ("multi_gpu_train", "gpu_train"),
                        ("lr_plateau", "sliding_window")]


def merged(base: str, *overrides: str, configs: Path = CONFIGS) -> dict:
    """The config ``monai.bundle run`` builds from ``configs/<base>.json`` and the overrides, macros resolved."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(configs / f"{name}.json") for name in (base, *overrides)])
    parser.resolve_macro_and_relative_ids()
    return parser.get()


def _item(path: str, key) -> str:
    return f"{path}#{key}" if path else str(key)


def _label(item) -> str:
    if isinstance(item, dict) and "_target_" in item:
        return f" {item['_target_']}"
    return f" {item}" if isinstance(item, str) and item.startswith("@") else ""


def _same_component(base: dict, mode: dict) -> bool:
    """The same ``_target_``, or another one with at least half of the arguments unchanged."""
    if base.get("_target_") == mode.get("_target_"):
        return True
    keys = (base.keys() | mode.keys()) - {"_target_"}
    return 2 * sum(k in base and k in mode and base[k] == mode[k] for k in keys) >= len(keys)


def differences(base, mode, path: str = "") -> set[str]:
    """What ``mode`` changes of ``base``, as ``~ id`` / ``+ id`` / ``- id`` lines (see the module docstring)."""
    if base == mode:
        return set()
    if isinstance(base, dict) and isinstance(mode, dict) and _same_component(base, mode):
        found = set()
        for key in [*base, *(k for k in mode if k not in base)]:
            if key not in mode:
                found.add(f"- {_item(path, key)}")
            elif key not in base:
                found.add(f"+ {_item(path, key)}")
            else:
                found |= differences(base[key], mode[key], _item(path, key))
        return found
    if isinstance(base, list) and isinstance(mode, list):
        canon = [[json.dumps(x, sort_keys=True) for x in items] for items in (base, mode)]
        matcher = difflib.SequenceMatcher(None, *canon, autojunk=False)
        if base and mode and not any(size for *_, size in matcher.get_matching_blocks()):
            return {f"~ {path}"}  # a list of its own
        found = set()
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                continue
            if tag == "replace" and i2 - i1 == j2 - j1:  # items changed in place: what changed in each
                for i, j in zip(range(i1, i2), range(j1, j2)):
                    found |= differences(base[i], mode[j], _item(path, j))
                continue
            found |= {f"- {_item(path, i)}{_label(base[i])}" for i in range(i1, i2)}
            found |= {f"+ {_item(path, j)}{_label(mode[j])}" for j in range(j1, j2)}
        return found
    return {f"~ {path}"}


def unresolved_references(config: dict) -> set[str]:
    """``@ids`` used anywhere in ``config`` (plain or inside ``$`` expressions) that it does not define."""
    from monai.bundle import ConfigParser
    from monai.bundle.reference_resolver import ReferenceResolver

    parser = ConfigParser(config)
    missing = set()

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str):
            missing.update(ref for ref in ReferenceResolver.match_refs_pattern(value) if ref not in parser)

    walk(config)
    return missing


def check_mode(base: str, overrides: tuple[str, ...], expected: set[str], configs: Path = CONFIGS) -> None:
    found = differences(merged(base, configs=configs), merged(base, *overrides, configs=configs))
    # a tuned value may equal the base's (a lead engineer may calibrate training's validation as well)
    assert found - TUNED == expected - TUNED, (
        f"{base} + {' + '.join(overrides)}: unexpected {sorted(found - expected)}, "
        f"missing {sorted(expected - found - TUNED)}")


@pytest.mark.parametrize("overrides", list(TRAIN_MODES), ids="+".join)
def test_each_training_mode_is_train_json_plus_only_its_stated_differences(overrides):
    check_mode("train", overrides, TRAIN_MODES[overrides])


@pytest.mark.parametrize("overrides", list(INFERENCE_MODES), ids="+".join)
def test_each_inference_mode_is_inference_json_plus_only_its_stated_differences(overrides):
    check_mode("inference", overrides, INFERENCE_MODES[overrides])


@pytest.mark.parametrize("overrides", COMBINED_TRAIN_MODES, ids="+".join)
def test_documented_combinations_make_the_union_of_their_parts(overrides):
    check_mode("train", overrides, set().union(*(TRAIN_MODES[(o,)] for o in overrides)))


def test_every_mode_resolves_every_reference():
    modes = [("train", *o) for o in [(), *TRAIN_MODES, *COMBINED_TRAIN_MODES]] + \
            [("inference", *o) for o in [(), *INFERENCE_MODES]]
    for names in modes:
        assert unresolved_references(merged(*names)) == set(), names


def test_no_override_file_goes_untested():
    tested = {name for modes in (TRAIN_MODES, INFERENCE_MODES) for mode in modes for name in mode}
    files = {p.stem for p in CONFIGS.glob("*.json")} - {"train", "inference", "metadata"}
    assert files == tested


def test_training_and_inference_agree_on_every_id_they_share():
    """The film's scale, the inferer, the network and the presence settings are one thing in training's
    validation, evaluation and inference; what differs is listed. Validation's inferer is what inference
    wraps in its test-time averaging, and its post-processing up to the label map is inference's."""
    differ = {"imports", "output_dir", "dataset_dir", "pretrained", "activation_checkpointing", "network", "setup",
              "run", "presence_fusion", "presence_threshold", "presence_gate", "engine"}
    for variant in ((), ("unet",), ("basic_unet",), ("sliding_window",)):
        train, infer = merged("train", *variant), merged("inference", *variant)
        shared = (train.keys() & infer.keys()) - differ - {"_meta_"}
        assert {"network_def", "film_inferer", "film_scale", "patch_size", "cpu_bf16", "is_main"} <= shared
        assert {k: train[k] for k in shared} == {k: infer[k] for k in shared}, variant
        assert train["validate"]["inferer"] == infer["inferer"]["inferer"]
        label_map = [t["_target_"] for t in infer["postprocessing"]["transforms"]].index(
            "monaifrac.transforms.ArgMaxd")
        assert train["validate"]["postprocessing"]["transforms"][:label_map] == \
            infer["postprocessing"]["transforms"][:label_map]
    # the calibrated presence fusion and threshold, and the gate, are the same for evaluation and inference
    evaluate, infer = merged("train", "evaluate"), merged("inference")
    assert [evaluate[k] for k in ("presence_fusion", "presence_threshold", "presence_gate")] == \
        [infer[k] for k in ("presence_fusion", "presence_threshold", "presence_gate")]


def test_the_key_metric_is_named_once():
    """Validation and training monitor ``key_metric``; early stopping and ReduceLROnPlateau read the
    evaluator's key metric by the name the engine holds, not a copy of it."""
    text = "\n".join(p.read_text() for p in CONFIGS.glob("*.json") if p.stem != "metadata")
    train = merged("train")
    assert train["train"]["key_metric"]["names"] == train["validate"]["key_metric"]["names"] == "@key_metric"
    assert text.count(json.dumps(train["key_metric"])) == 1  # its definition
    assert "key_metric_name" in train["early_stop"]["score_function"]
    assert "key_metric_name" in merged("train", "lr_plateau")["lr_step_transform"]


def _copy_configs(tmp_path: Path) -> Path:
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    return configs


def _edit_train_json(configs: Path, edit) -> None:
    path = configs / "train.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def test_a_change_to_train_json_reaches_every_training_mode(tmp_path):
    """Post-processing, setup and the key metric changed in train.json: every mode carries the change, and
    each still differs from the changed base by its stated differences only."""
    configs = _copy_configs(tmp_path)

    def edit(config):
        config["train"]["postprocessing"]["transforms"].append({"_target_": "Identityd", "keys": "pred"})
        config["setup"].append("$print('set up')")
        config["key_metric"] = "fracture_iou"

    _edit_train_json(configs, edit)
    change = {"+ train#postprocessing#transforms#3 Identityd", "+ setup#6", "~ key_metric"}
    for overrides in [(), *TRAIN_MODES, *COMBINED_TRAIN_MODES]:
        assert differences(merged("train", *overrides), merged("train", *overrides, configs=configs)) == change
        if overrides:
            check_mode("train", overrides, set().union(*(TRAIN_MODES[(o,)] for o in overrides)), configs=configs)


def test_an_override_that_copies_a_base_list_fails_the_check_once_the_base_changes(tmp_path):
    """What the check is for. An override that restates train.json's post-processing passes while the copy
    is equal, and fails as soon as train.json's post-processing changes. One that copies ``setup`` into
    its ``initialize`` instead of referring to it replaces the list, not adds to it."""
    configs = _copy_configs(tmp_path)
    base = merged("train")
    (configs / "stale.json").write_text(json.dumps({
        "train#postprocessing": base["train"]["postprocessing"],
        "initialize": ["$monaifrac.distributed.init_process_group(@device)", *base["setup"]]}))
    stated = differences(base, merged("train", "stale", configs=configs))  # an allow-list written today
    assert stated == {"~ initialize"}  # not "+ initialize#0": a list of its own
    check_mode("train", ("stale",), stated, configs=configs)

    _edit_train_json(configs, lambda c: c["train"]["postprocessing"]["transforms"].append(
        {"_target_": "Identityd", "keys": "pred"}))
    with pytest.raises(AssertionError, match=r"unexpected \['- train#postprocessing#transforms#3 Identityd'\]"):
        check_mode("train", ("stale",), stated, configs=configs)
