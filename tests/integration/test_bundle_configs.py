"""The bundle as model-zoo CI checks it (verify_metadata, verify_net_in_out, ConfigWorkflow
properties) and what its configs build (transforms, caches, inferers). Which ids each mode changes,
and that training and inference agree on the ids they share: tests/unit/test_bundle_config_parity.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.integration.conftest import (BASIC_UNET_JSON, PATCHES_JSON,
                                 EVALUATE_JSON, INFERENCE_JSON, METADATA_JSON, REPO, SCHEMA_JSON,
                                 TRAIN_JSON, bundle_cmd, check_rc, run_cmd)

pytestmark = pytest.mark.slow

def parser_of(*names: str):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(REPO / n) for n in names])
    return parser


def only(items: list[dict], target: str) -> dict:
    found = [t for t in items if t.get("_target_") == target]
    assert len(found) == 1, (target, items)
    return found[0]


def test_verify_metadata_with_the_shipped_schema():
    log = check_rc(run_cmd(bundle_cmd("verify_metadata", "--meta_file", METADATA_JSON, "--filepath", SCHEMA_JSON)))
    assert "metadata is verified with no error" in log


def test_verify_metadata_rejects_metadata_without_network_data_format(tmp_path):
    from monai.bundle import verify_metadata

    meta = json.loads((REPO / METADATA_JSON).read_text())
    del meta["network_data_format"]
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="network_data_format"):
        verify_metadata(meta_file=str(broken), filepath=str(REPO / SCHEMA_JSON))


def test_verify_net_in_out():
    log = check_rc(run_cmd(bundle_cmd("verify_net_in_out", "--net_id", "network_def", "--meta_file", METADATA_JSON,
                                      "--config_file", INFERENCE_JSON)))
    assert "data shape of network is verified with no error" in log


def test_verify_net_in_out_with_basic_unet(monkeypatch):
    """The same verb with ``basic_unet.json`` added (a list of configs), in this process."""
    import monai.networks.nets as nets
    from monai.bundle import verify_net_in_out

    built = []
    original = nets.BasicUNet.__init__

    def spy(self, *args, **kwargs):
        built.append(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(nets.BasicUNet, "__init__", spy)
    verify_net_in_out(net_id="network_def", meta_file=str(REPO / METADATA_JSON),
                      config_file=[str(REPO / INFERENCE_JSON), str(REPO / BASIC_UNET_JSON)],
                      **{"_meta_#network_data_format#outputs#pred#num_channels": 3})  # no presence channel
    features = json.loads((REPO / BASIC_UNET_JSON).read_text())["network_def"]["features"]
    assert len(built) >= 1 and built[0]["features"] == features  # the network that was checked


def test_sliding_window_override_swaps_the_film_inferer_in_validation_and_inference():
    from monai.inferers import SlidingWindowInferer

    from monaifrac.inferers import AutocastInferer, WholeFilmInferer

    for config in (TRAIN_JSON, INFERENCE_JSON):
        assert isinstance(parser_of(config).get_parsed_content("film_inferer"), WholeFilmInferer)
        parser = parser_of(config, "bundle/configs/sliding_window.json")
        window = parser.get_parsed_content("film_inferer")
        assert isinstance(window, SlidingWindowInferer) and tuple(window.roi_size) == (256, 256)
    validate = parser_of(TRAIN_JSON, "bundle/configs/sliding_window.json").get_parsed_content("validate#inferer")
    assert isinstance(validate, AutocastInferer) and isinstance(validate.inferer, SlidingWindowInferer)


def test_intensity_scaling_is_the_same_for_training_and_inference():
    """Training takes the window where inference does and scales to the same range (in two steps: the cache
    between them holds each film at its own bit depth)."""
    train, infer = parser_of(TRAIN_JSON), parser_of(INFERENCE_JSON)
    window = only(train.get("train#deterministic_transforms"), "monaifrac.transforms.PercentileWindowd")
    scaling = train.get("train#intensity_scaling")
    assert scaling["_target_"] == "monaifrac.transforms.ScaleIntensityWindowd"
    infer_args = only(infer.get("preprocessing#transforms"), "monaifrac.transforms.ScaleIntensityRangePercentilesd")
    assert {k: window[k] for k in ("lower", "upper")} == {k: infer_args[k] for k in ("lower", "upper")}
    assert {k: scaling[k] for k in ("b_min", "b_max", "clip")} == {k: infer_args[k] for k in ("b_min", "b_max", "clip")}
    assert not infer_args.get("relative") and not infer_args.get("channel_wise")  # what the two steps implement
    assert window["lower"] == 0.5 and window["upper"] == 99.5  # the values metadata.json documents
    # the scaling is the first thing a drawn film meets after its crop (film_crop, off unless set), in both
    # recipes, and validation scales when drawn too
    assert train.get("train#random_transforms")[0]["_target_"] == "RandCropByLabelClassesd"
    assert train.get("train#random_transforms")[1] == "@train#intensity_scaling"
    assert parser_of(TRAIN_JSON, PATCHES_JSON).get("train#random_transforms")[1] == "@train#intensity_scaling"
    assert train.get("validate#draw_transforms#transforms") == ["%train#intensity_scaling"]


@pytest.mark.parametrize("stem", ["IMG0000003", "IMG0000004", "IMG0000002"], ids=["exif8", "exif6", "plain"])
def test_inference_preprocessing_of_a_jpg_equals_evaluation_preprocessing_of_its_nifti(prepared, stem):
    """What `monaifrac evaluate` scores is what `monaifrac infer` labels."""
    from monaifrac.data.synth import plan_images

    spec = next(s for s in plan_images(16) if s.stem == stem)
    jpg = prepared.atlas / "images" / ("Fractured" if spec.fractured else "Non_fractured") / f"{stem}.jpg"
    validate = parser_of(TRAIN_JSON, EVALUATE_JSON).get_parsed_content("validate#preprocessing")
    infer = parser_of(INFERENCE_JSON).get_parsed_content("preprocessing")
    from_nifti = validate({"image": str(prepared.dataset_dir / "images" / f"{stem}.nii.gz"),
                           "label": str(prepared.dataset_dir / "labels" / f"{stem}.nii.gz")})["image"]
    from_jpg = infer({"image": str(jpg)})["image"]
    assert tuple(from_jpg.shape) == tuple(from_nifti.shape) == (1, spec.width, spec.height)
    assert from_jpg.dtype == from_nifti.dtype == torch.float32
    assert float((torch.as_tensor(from_jpg) - torch.as_tensor(from_nifti)).abs().max()) <= 1e-6
    assert float(from_jpg.min()) == 0.0 and float(from_jpg.max()) == 1.0
    assert np.ptp(np.asarray(from_jpg)) > 0.5


def _film_as_inference_scales_it(path: str) -> torch.Tensor:
    from monai.transforms import LoadImage

    from monaifrac.transforms import ScaleIntensityRangePercentiles

    film = LoadImage(reader="monaifrac.io.RadiographReader", image_only=True, ensure_channel_first=True)(path)
    return ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True)(film)


@pytest.mark.parametrize("recipe", ["whole_film", "patches"])
def test_training_cache_holds_films_at_their_own_bit_depth_and_training_sees_float32_crops(prepared, tmp_path,
                                                                                           recipe):
    """The cache holds each film as its file does (uint8 for a JPEG: one byte a pixel, a quarter of float32)
    with its window taken before LimitLongSided resamples it; what training sees (whole films, or the crops of
    ``patches.json``) is float32 in [0, 1]."""
    from monai.transforms import LoadImage

    from monaifrac.transforms import percentile_window

    parser = parser_of(TRAIN_JSON, *([PATCHES_JSON] if recipe == "patches" else []))
    # over 128 px every synthetic film (160-192 px) is a scan, reduced to 96 x the scale, as FracAtlas' are
    parser.update({"dataset_dir": str(prepared.dataset_dir), "bundle_root": str(tmp_path),
                   "num_workers": 0, "film_max_side": 128, "film_long_side": 96})
    dataset = parser.get_parsed_content("train#dataset")
    scale = parser.get_parsed_content("film_scale")
    assert len(dataset._cache) == len(prepared.section("training"))
    for item, entry in zip(dataset._cache, dataset.data):
        assert item["image"].dtype == torch.uint8 and item["label"].dtype == torch.uint8
        if recipe == "whole_film":
            assert max(item["image"].shape[1:]) == round(96 * scale)  # resampled, and still uint8
        as_read = LoadImage(reader="monaifrac.io.RadiographReader", image_only=True)(entry["image"])
        assert max(as_read.shape) > 128 and item["image_window"] == percentile_window(as_read, 0.5, 99.5)
    crops = dataset[0]
    if recipe == "whole_film":  # one sample a film: at 1.5x a crop of the side a whole film has at 1x
        crops = crops if isinstance(crops, dict) or len(crops) != 1 else crops[0]  # a crop comes as a list of one
        assert isinstance(crops, dict) and tuple(crops["image"].shape) == (1, 128, 128)
        assert scale == 1 or parser.get_parsed_content("film_crop") == [128, 128]
        crops = [crops]
    assert crops and all(c["image"].dtype == torch.float32 and c["label"].dtype == torch.int64 for c in crops)
    assert all("image_window" not in c for c in crops)  # consumed by the scaling, not collated
    assert all(float(c["image"].min()) >= -0.2 and float(c["image"].max()) <= 1.2 for c in crops)  # [0, 1], ±10 %
    # augmentation runs untracked: plain tensors reach the loader (no MetaTensor bookkeeping per crop)
    assert all(type(c[key]) is torch.Tensor for c in crops for key in ("image", "label"))


def test_training_cache_holds_films_at_their_stored_size_and_enlarges_each_when_drawn(prepared, tmp_path):
    """At 1.5x the cache holds a film that is not a scan at its stored size (not 2.25x its pixels) and the
    scale transforms enlarge it when it is drawn, to exactly the pixels enlarging before the cache gave."""
    from monai.transforms import Compose

    from monaifrac.transforms import LimitLongSided

    parser = parser_of(TRAIN_JSON)
    # 256 px: no synthetic film (160-192 px) is a scan, as FracAtlas' 373 x 454 films are not
    parser.update({"dataset_dir": str(prepared.dataset_dir), "bundle_root": str(tmp_path), "num_workers": 0,
                   "film_max_side": 256, "film_long_side": 240, "film_scale": 1.5})
    dataset = parser.get_parsed_content("train#dataset")
    deterministic = Compose(parser.get_parsed_content("train#deterministic_transforms"))
    enlarge = parser.get_parsed_content("train#scale_transforms")[0]
    before_cache = LimitLongSided(["image", "label"], 256, 240, mode=["area", "nearest"], scale=1.5)
    for item, entry in zip(dataset._cache, dataset.data):
        stored = deterministic(dict(entry))
        assert item["image"].shape == stored["image"].shape  # cached as stored
        drawn, enlarged = enlarge(dict(item)), before_cache(stored)
        assert list(drawn["image"].shape[1:]) == [round(s * 1.5) for s in stored["image"].shape[1:]]
        for key in ("image", "label"):
            assert torch.equal(torch.as_tensor(drawn[key]), torch.as_tensor(enlarged[key]))
    sample = dataset[0]
    sample = sample[0] if isinstance(sample, list) else sample
    assert tuple(sample["image"].shape) == (1, 256, 256)  # a film_crop of the enlarged film


def test_validation_cache_holds_films_at_their_own_bit_depth_and_the_evaluator_gets_what_inference_sees(
        prepared, tmp_path):
    from monai.data import DataLoader

    parser = parser_of(TRAIN_JSON)
    parser.update({"dataset_dir": str(prepared.dataset_dir), "bundle_root": str(tmp_path), "num_workers": 0})
    dataset = parser.get_parsed_content("validate#dataset")
    assert dataset._cache and all(item["image"].dtype == torch.uint8 for item in dataset._cache)
    batch = next(iter(DataLoader(dataset, batch_size=1)))
    image, label = parser.get_parsed_content("validate#evaluator").prepare_batch(batch, torch.device("cpu"))
    assert image.dtype == torch.float32 and "image_window" not in batch
    # exactly the film inference scales: the cache costs no precision
    assert torch.equal(image[0].as_tensor(), _film_as_inference_scales_it(dataset.data[0]["image"]).as_tensor())
    assert torch.equal(torch.as_tensor(label), torch.as_tensor(batch["label"]))
    assert image.meta["filename_or_obj"] == batch["image"].meta["filename_or_obj"]  # metadata kept for the report
    # evaluation does not cache and reads the same films
    evaluate = parser_of(TRAIN_JSON, EVALUATE_JSON)
    evaluate.update({"dataset_dir": str(prepared.dataset_dir), "bundle_root": str(tmp_path), "num_workers": 0})
    evaluated = evaluate.get_parsed_content("validate#dataset")[0]["image"]
    assert evaluated.dtype == torch.float32 and torch.equal(evaluated.as_tensor(), image[0].as_tensor())


@pytest.mark.parametrize("workflow_type, configs", [
    ("train", [TRAIN_JSON]),
    ("train", [TRAIN_JSON, EVALUATE_JSON]),
    ("infer", [INFERENCE_JSON]),
], ids=["train", "train+evaluate", "infer"])
def test_config_workflow_has_every_required_property(workflow_type, configs, trained, tmp_path):
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        workflow_type=workflow_type,
        config_file=[str(REPO / c) for c in configs],
        meta_file=str(REPO / METADATA_JSON),
        logging_file=False,
        bundle_root=str(trained.bundle_root),
        dataset_dir=str(trained.prepared.dataset_dir),
        input_dir=str(trained.prepared.dataset_dir / "images"),
        output_dir=str(tmp_path / "out"),
        patch_size=[64, 64],
        num_workers=0,
        cache_rate=0.0,
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    assert workflow.bundle_root == str(trained.bundle_root)
    if workflow_type == "train":
        assert workflow.max_epochs == 100 and len(workflow.train_dataset_data) > 0
    else:
        assert workflow.network_def is not None


def test_keep_checkpoints_sets_how_many_epoch_checkpoints_the_saver_keeps(prepared, tmp_path):
    """`monaifrac average` needs the late epochs' checkpoints: keep_checkpoints keeps the last N (default 1)."""
    from monaifrac.handlers import TrainingStateSaver

    for overrides, expected in (({}, 1), ({"keep_checkpoints": 4}, 4)):
        parser = parser_of(TRAIN_JSON)
        parser.update({"dataset_dir": str(prepared.dataset_dir), "bundle_root": str(tmp_path), "num_workers": 0,
                       **overrides})
        savers = [h for h in parser.get_parsed_content("train#handlers") if isinstance(h, TrainingStateSaver)]
        assert len(savers) == 1 and savers[0]._interval_checkpoint.n_saved == expected  # ignite.handlers.Checkpoint
