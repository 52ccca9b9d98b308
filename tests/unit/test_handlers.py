"""monaifrac.handlers on small ignite engines: JSON metrics, learning rate, overlays, resumable state."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from PIL import Image

from monaifrac.handlers import (LearningRateLogger, MetricsJSONWriter, OverlayImageHandler, TrainingStateLoader,
                                TrainingStateSaver)
from monaifrac.io import from_monai_frame
from monaifrac.visualize import overlay


class FakeWriter:
    """Records what a handler asks a SummaryWriter to do."""

    def __init__(self):
        self.scalars, self.images, self.flushes = [], [], 0

    def add_scalar(self, tag, value, global_step=None):
        self.scalars.append((tag, float(value), global_step))

    def add_image(self, tag, img, global_step=None, dataformats="CHW"):
        self.images.append((tag, np.array(img), global_step, dataformats))

    def flush(self):
        self.flushes += 1


def hidden_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- MetricsJSONWriter


def metrics_engine(metrics: dict, n_films: int = 5) -> Engine:
    engine = Engine(lambda e, batch: batch)
    engine.data_loader = torch.utils.data.DataLoader(list(range(n_films)), batch_size=2)  # as MONAI workflows have

    @engine.on(Events.EPOCH_COMPLETED)
    def _set_metrics(e):
        e.state.metrics = dict(metrics)

    return engine


def test_metrics_json_writer_writes_plain_values(tmp_path):
    target = tmp_path / "eval" / "metrics.json"
    metrics = {"val_fracture_dice": torch.tensor(0.25), "val_bone_dice": np.float32(0.5), "val_fracture_hd95": 3.0,
               "per_class": torch.tensor([0.1, 0.2])}
    engine = metrics_engine(metrics)
    MetricsJSONWriter(target, extra={"part": "validation", "fold": -1}).attach(engine)
    engine.run(engine.data_loader, max_epochs=1)
    payload = json.loads(target.read_text())
    assert payload["metrics"]["val_fracture_dice"] == 0.25
    assert payload["metrics"]["val_bone_dice"] == 0.5 and type(payload["metrics"]["val_bone_dice"]) is float
    assert payload["metrics"]["val_fracture_hd95"] == 3.0
    assert payload["metrics"]["per_class"] == pytest.approx([0.1, 0.2])
    assert payload["films"] == 5
    assert payload["part"] == "validation" and payload["fold"] == -1
    assert hidden_files(target.parent) == []


def test_metrics_json_writer_replaces_the_file_atomically(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text('{"old": true}\n')
    writer = MetricsJSONWriter(target)
    engine = metrics_engine({"val_fracture_dice": 0.75})
    writer.attach(engine)

    real_write_text = Path.write_text

    def dies_half_way(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        engine.run(engine.data_loader, max_epochs=1)
    monkeypatch.undo()
    assert target.read_text() == '{"old": true}\n'  # the previous file is untouched
    assert hidden_files(tmp_path) == []  # and the half-written temporary file is gone

    engine = metrics_engine({"val_fracture_dice": 0.75})
    writer.attach(engine)
    engine.run(engine.data_loader, max_epochs=1)
    assert json.loads(target.read_text())["metrics"] == {"val_fracture_dice": 0.75}
    assert hidden_files(tmp_path) == []


# ----------------------------------------------------------------------------- LearningRateLogger


def test_learning_rate_logger_writes_the_rate_of_each_epoch():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    engine = Engine(lambda e, batch: optimizer.step())
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: scheduler.step())
    writer = FakeWriter()
    LearningRateLogger(writer, optimizer).attach(engine)
    engine.run([0, 1], max_epochs=3)
    assert writer.scalars == [("lr", pytest.approx(0.05), 1), ("lr", pytest.approx(0.025), 2),
                              ("lr", pytest.approx(0.0125), 3)]


def test_learning_rate_logger_without_writer_does_nothing(tmp_path, monkeypatch):
    """Non-main ranks get no writer: the handler runs at every epoch end and writes nothing anywhere (no
    default ``SummaryWriter`` in ``./runs``, as MONAI's handlers make when given None), nor touches the rate."""
    monkeypatch.chdir(tmp_path)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    engine = Engine(lambda e, batch: None)
    logger = LearningRateLogger(None, optimizer, tag="learning_rate")
    logger.attach(engine)
    assert engine.has_event_handler(logger, Events.EPOCH_COMPLETED)
    calls = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: calls.append(logger.writer))
    engine.run([0], max_epochs=2)
    assert calls == [None, None]  # it ran both epochs and never made itself a writer
    assert optimizer.param_groups[0]["lr"] == 0.1
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- OverlayImageHandler

W, H = 12, 8  # MONAI frame (W, H); pictures are (H, W) row-major


def film(seed: int) -> dict:
    """One decollated evaluator output: image (1, W, H), one-hot label and prediction (3, W, H)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, W, H, generator=g)
    label_idx = torch.zeros(W, H, dtype=torch.long)
    label_idx[2:8, 2:5] = 1
    label_idx[3:5, 3:4] = 2
    pred_idx = torch.roll(label_idx, shifts=seed + 1, dims=0)
    onehot = lambda idx: torch.nn.functional.one_hot(idx, 3).permute(2, 0, 1).float()  # noqa: E731
    return {"image": image, "label": onehot(label_idx), "pred": onehot(pred_idx)}


def expected_picture(item: dict, with_label: bool = True) -> np.ndarray:
    grey = from_monai_frame(item["image"][0].numpy())
    panels = [overlay(grey, from_monai_frame(item["pred"].argmax(0).numpy().astype(np.uint8)))]
    if with_label:
        panels.insert(0, overlay(grey, from_monai_frame(item["label"].argmax(0).numpy().astype(np.uint8))))
    return np.concatenate(panels, axis=1)


def overlay_engine() -> Engine:
    return Engine(lambda e, batch: batch)  # the "output" is the decollated batch itself


def test_overlay_handler_draws_truth_and_prediction_of_the_first_film():
    films = [film(i) for i in range(4)]
    batches = [films[:2], films[2:]]
    engine = overlay_engine()
    writer = FakeWriter()
    OverlayImageHandler(writer).attach(engine)
    engine.run(batches, max_epochs=1)
    assert len(writer.images) == 1  # once per evaluator run
    tag, picture, step, fmt = writer.images[0]
    assert (tag, step, fmt) == ("val_overlay", 1, "HWC")
    assert picture.shape == (H, 2 * W, 3) and picture.dtype == np.uint8
    np.testing.assert_array_equal(picture, expected_picture(films[0]))  # the first film, not the last batch's
    assert not np.array_equal(picture, expected_picture(films[2]))
    assert writer.flushes == 1


def test_overlay_handler_picks_the_first_film_again_on_every_run():
    films = [film(i) for i in range(4)]
    engine = overlay_engine()
    writer = FakeWriter()
    OverlayImageHandler(writer, tag="x").attach(engine)
    engine.run([films[:2], films[2:]], max_epochs=1)
    engine.run([films[2:], films[:2]], max_epochs=1)  # a new run, another order
    np.testing.assert_array_equal(writer.images[0][1], expected_picture(films[0]))
    np.testing.assert_array_equal(writer.images[1][1], expected_picture(films[2]))


def test_overlay_handler_without_label_or_writer():
    item = film(0)
    del item["label"]
    engine = overlay_engine()
    writer = FakeWriter()
    OverlayImageHandler(writer).attach(engine)
    engine.run([[item]], max_epochs=1)
    np.testing.assert_array_equal(writer.images[0][1], expected_picture(item, with_label=False))
    assert writer.images[0][1].shape == (H, W, 3)

    engine = overlay_engine()
    OverlayImageHandler(None).attach(engine)
    engine.run([[film(1)]], max_epochs=1)  # non-main ranks: no writer, no error


def test_overlay_handler_into_a_real_tensorboard_file(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    films = [film(i) for i in range(2)]
    writer = SummaryWriter(log_dir=str(tmp_path))
    engine = overlay_engine()
    OverlayImageHandler(writer).attach(engine)
    engine.run([films], max_epochs=2)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.01)
    lr_engine = Engine(lambda e, b: None)
    LearningRateLogger(writer, optimizer).attach(lr_engine)
    lr_engine.run([0], max_epochs=2)
    writer.close()

    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    events = acc.Images("val_overlay")
    assert [e.step for e in events] == [2]
    decoded = np.asarray(Image.open(io.BytesIO(events[0].encoded_image_string)))
    np.testing.assert_array_equal(decoded, expected_picture(films[0]))
    assert [(e.step, round(e.value, 6)) for e in acc.Scalars("lr")] == [(1, 0.01), (2, 0.01)]


# ----------------------------------------------------------------------------- resumable training state


def counting_engine(seen: list) -> tuple[Engine, torch.nn.Module, torch.optim.Optimizer]:
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(engine, batch):
        seen.append((engine.state.epoch, batch))
        optimizer.zero_grad()
        model(torch.ones(1, 1)).sum().backward()
        optimizer.step()

    return Engine(step), model, optimizer


def test_training_state_saver_and_loader_resume_the_engine(tmp_path):
    seen: list = []
    engine, model, optimizer = counting_engine(seen)
    TrainingStateSaver(save_dir=str(tmp_path), save_dict={"model": model, "optimizer": optimizer},
                       save_final=True, final_filename="checkpoint_final.pt").attach(engine)
    engine.run([0, 1, 2], max_epochs=2)
    saved = torch.load(tmp_path / "checkpoint_final.pt", weights_only=False)
    assert {"model", "optimizer", "trainer"} <= set(saved)
    assert saved["trainer"]["iteration"] == 6 and saved["trainer"]["epoch_length"] == 3

    resumed_seen: list = []
    resumed, resumed_model, resumed_optimizer = counting_engine(resumed_seen)
    TrainingStateLoader(load_path=str(tmp_path / "checkpoint_final.pt"),
                        load_dict={"model": resumed_model, "optimizer": resumed_optimizer}).attach(resumed)
    resumed.run([0, 1, 2], max_epochs=3)
    assert [epoch for epoch, _ in resumed_seen] == [3, 3, 3]  # only the third epoch runs
    assert resumed.state.iteration == 9
    torch.testing.assert_close(saved["model"]["weight"] - 0.1 * 3,
                               resumed_model.state_dict()["weight"])  # went on from the saved weights
