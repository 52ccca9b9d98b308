"""monaifrac.compat against the installed ignite, MONAI and PyTorch: every private internal the package
relies on still exists where the wrapper reaches for it, and the wrapper reads and writes real state.

Each module's ``CHECKED_AGAINST`` is pinned to the installed version: an upgrade fails here first, by
name, and is accepted by re-reading that module against the new version and updating its constant.
MONAI Label's internals are checked in its own environment (tests/integration/test_compat_monailabel.py).
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import ignite
import monai
import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver, EarlyStopping

from monaifrac.compat import ignite as compat_ignite
from monaifrac.compat import monai as compat_monai
from monaifrac.compat import pytorch as compat_torch

PACKAGE = Path(__file__).resolve().parents[2] / "monaifrac"


@pytest.mark.parametrize("module, installed", [(compat_ignite, ignite.__version__), (compat_monai, monai.__version__),
                                               (compat_torch, torch.__version__.split("+")[0])],
                         ids=["ignite", "monai", "torch"])
def test_each_compat_module_was_checked_against_the_installed_version(module, installed):
    assert module.CHECKED_AGAINST == installed, (
        f"{module.__name__} was checked against {module.CHECKED_AGAINST}, {installed} is installed: re-read each "
        f"of its functions against {installed}, then set CHECKED_AGAINST")
    assert module.CHECKED_AGAINST in module.__doc__


def test_no_module_outside_compat_reaches_into_these_internals():
    names = ["_saved", "_get_filename_pattern", "_key_metric_checkpoint", "_interval_checkpoint",
             "_final_checkpoint", "_handler", "_last_lr", "_remove_autograd_hooks", "_BatchNorm", "_NormBase",
             "_make_same_padder", "_calculate_output_image_size", "_round_filters", "_round_repeats",
             # MONAI Label's LocalDatastore and DICOMWebDatastore
             "_datastore", "_lock_file", "_init_from_datastore_file", "_update_datastore_file", "_client",
             "_search_filter", "_fetch_by_frame", "_convert_to_nifti"]
    pattern = re.compile(r"\.(" + "|".join(names) + r")\b|import\s[^\n]*\b(" + "|".join(names) + r")\b")
    found = [f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
             for path in sorted(PACKAGE.rglob("*.py")) if path.relative_to(PACKAGE).parts[0] != "compat"
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "\n".join(found)


def test_the_dicomweb_client_imports_nothing_of_the_test_pacs_launcher():
    code = ("import sys, monaifrac.dicom.web as web; web.credentials(); "
            "print(sorted(m for m in sys.modules if m.startswith('monaifrac.dicom')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)}).stdout
    assert "monaifrac.dicom.web" in out and "monaifrac.dicom.orthanc" not in out, out


# -- ignite ------------------------------------------------------------------------------


def _epochs(tmp_path, n_saved=2) -> tuple[Engine, Checkpoint]:
    model = torch.nn.Linear(1, 1)
    trainer = Engine(lambda e, b: None)
    checkpoint = Checkpoint({"model": model}, DiskSaver(str(tmp_path), require_empty=False), n_saved=n_saved,
                            score_function=lambda e: e.state.epoch, score_name="epoch")
    trainer.add_event_handler(Events.EPOCH_COMPLETED, checkpoint)
    return trainer, checkpoint


def test_ignite_internals_exist():
    assert "_saved" in Checkpoint._state_dict_all_req_keys
    assert list(inspect.signature(Checkpoint._get_filename_pattern).parameters) == ["self", "global_step"]


def test_kept_files_are_the_files_ignite_keeps_and_removes(tmp_path):
    trainer, checkpoint = _epochs(tmp_path)
    trainer.run([0], max_epochs=3)
    kept = compat_ignite.kept_files(checkpoint)
    assert kept == [(2, "model_epoch=2.pt"), (3, "model_epoch=3.pt")]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f for _, f in kept]

    # a fresh Checkpoint told of them removes the worst one as its own when it saves a better file
    trainer, fresh = _epochs(tmp_path)
    compat_ignite.set_kept_files(fresh, kept)
    assert compat_ignite.kept_files(fresh) == kept
    trainer.state.epoch = 3
    trainer.run([0], max_epochs=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_epoch=3.pt", "model_epoch=4.pt"]


@pytest.mark.parametrize("prefix", ["", "run"])
def test_checkpoint_filename_is_the_name_ignite_writes(tmp_path, prefix):
    model = torch.nn.Linear(1, 1)
    trainer = Engine(lambda e, b: None)
    checkpoint = Checkpoint({"model": model, "optimizer": torch.optim.SGD(model.parameters(), 0.1)},
                            DiskSaver(str(tmp_path), require_empty=False), filename_prefix=prefix, n_saved=1,
                            score_function=lambda e: e.state.epoch, score_name="epoch")
    trainer.add_event_handler(Events.EPOCH_COMPLETED, checkpoint)
    trainer.run([0], max_epochs=2)
    assert [p.name for p in tmp_path.iterdir()] == [compat_ignite.checkpoint_filename(checkpoint, "checkpoint", 2)]


# -- MONAI -------------------------------------------------------------------------------


def test_checkpoint_saver_checkpoints_are_the_ones_it_saves_with(tmp_path):
    from monai.handlers import CheckpointSaver

    model = torch.nn.Linear(1, 1)
    every = CheckpointSaver(str(tmp_path), {"model": model}, save_final=True, save_key_metric=True,
                            key_metric_name="dice", save_interval=1)
    found = {kind: compat_monai.saver_checkpoint(every, kind) for kind in ("final", "key_metric", "interval")}
    assert all(isinstance(c, Checkpoint) for c in found.values())
    assert {k: c.score_name for k, c in found.items()} == {"final": "final_iteration", "key_metric": "key_metric",
                                                           "interval": "epoch"}
    assert compat_monai.saver_checkpoints(every) == list(found.values())

    only_best = CheckpointSaver(str(tmp_path), {"model": model}, save_key_metric=True, key_metric_name="dice")
    assert compat_monai.saver_checkpoint(only_best, "interval") is None
    assert compat_monai.saver_checkpoint(only_best, "final") is None

    # the interval checkpoint is the one that writes and keeps the per-epoch files
    trainer = Engine(lambda e, b: None)
    saver = CheckpointSaver(str(tmp_path / "run"), {"model": model}, save_interval=1, n_saved=1)
    saver.attach(trainer)
    trainer.run([0], max_epochs=2)
    kept = compat_ignite.kept_files(compat_monai.saver_checkpoint(saver, "interval"))
    assert [f for _, f in kept] == [p.name for p in (tmp_path / "run").iterdir()] == ["model_epoch=2.pt"]


def test_early_stopping_is_the_ignite_handler_that_counts(tmp_path):
    from monai.handlers import EarlyStopHandler

    trainer = Engine(lambda e, b: None)
    handler = EarlyStopHandler(patience=3, score_function=lambda e: -float(e.state.epoch))  # never improves
    assert compat_monai.early_stopping(handler) is None  # no trainer yet
    handler.set_trainer(trainer)
    handler.attach(trainer)
    stopping = compat_monai.early_stopping(handler)
    assert isinstance(stopping, EarlyStopping) and stopping.patience == 3
    trainer.run([0], max_epochs=3)
    assert (stopping.counter, stopping.best_score) == (2, -1.0)


def test_mbconv_block_has_the_parts_a_lite_block_runs():
    from monai.networks.nets.efficientnet import MBConvBlock

    from monaifrac.networks.efficientnet_lite import LiteMBConvBlock

    block = MBConvBlock(2, 16, 16, 3, 1, image_size=[32, 32], expand_ratio=6, se_ratio=None)
    assert tuple(block._modules) == compat_monai.MBCONV_PARTS  # nothing added, moved or renamed
    lite = LiteMBConvBlock(2, 16, 16, 3, 1, image_size=[32, 32], expand_ratio=6)
    lite.eval()
    x = torch.randn(1, 16, 32, 32)
    with torch.no_grad():  # the Lite block is MONAI's parts, ReLU6 in place of swish
        want = lite._bn2(lite._project_conv(lite._project_conv_padding(torch.nn.functional.relu6(lite._bn1(
            lite._depthwise_conv(lite._depthwise_conv_padding(torch.nn.functional.relu6(lite._bn0(
                lite._expand_conv(lite._expand_conv_padding(x)))))))))))
        torch.testing.assert_close(lite(x), want + x)


def test_efficientnet_helpers_give_efficientnets_sizes():
    conv = torch.nn.Conv2d(3, 8, kernel_size=3, stride=2)
    padded = compat_monai.same_padder(conv, [225, 224])
    assert conv(padded(torch.zeros(1, 3, 225, 224))).shape[-2:] == (113, 112)  # "same": ceil(size / stride)
    assert compat_monai.output_image_size([225, 224], 2) == [113, 112]
    assert compat_monai.round_filters(32, 1.0, 8) == 32
    assert compat_monai.round_filters(40, 1.1, 8) == 48  # EfficientNet-Lite1's third stage
    assert compat_monai.round_repeats(2, 1.2) == 3
    assert compat_monai.round_repeats(2, None) == 2


# -- PyTorch -----------------------------------------------------------------------------


def test_set_last_lr_is_what_the_scheduler_reports():
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    optimizer.step()
    scheduler.step()
    assert "_last_lr" in vars(scheduler)
    optimizer.param_groups[0]["lr"] = 0.25
    compat_torch.set_last_lr(scheduler, [0.25])
    assert scheduler.get_last_lr() == [0.25]


def test_ddp_autograd_hooks_can_be_removed():
    from torch.nn.parallel import DistributedDataParallel

    assert list(inspect.signature(DistributedDataParallel._remove_autograd_hooks).parameters) == ["self"]
    # run on a real DDP module by tests/unit/test_distributed.py (release_ddp)


def test_norm_layer_kinds():
    from torch import nn

    kinds = {nn.BatchNorm1d(2): (True, True), nn.BatchNorm2d(2): (True, True), nn.SyncBatchNorm(2): (True, True),
             nn.InstanceNorm2d(2): (False, False), nn.InstanceNorm2d(2, track_running_stats=True): (False, True),
             nn.BatchNorm2d(2, track_running_stats=False): (True, False), nn.GroupNorm(1, 2): (False, False)}
    for layer, (batch, running) in kinds.items():
        assert (compat_torch.is_batch_norm(layer), compat_torch.is_running_stats_norm(layer)) == (batch, running), layer
