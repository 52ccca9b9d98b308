"""The bundle's model, loaded once, labelling one film at a time in this process (``monaifrac pacs-watch``).

:class:`Labeller` builds ``inference.json``'s own ``preprocessing``, ``inferer``, ``network`` and
``postprocessing`` with ``monai.bundle.ConfigParser`` (as ``monaifrac infer`` does, so a film is
labelled exactly as there: same reader, intensity scaling, engine, score and call), loads the
weights once, and then answers :meth:`Labeller.label` per film: the label map in the film's
stored pixel frame and its fracture score. The file writers of the postprocessing
(``SaveImaged``, the overlay and DICOM writers) are left out: the caller decides what to keep.
The time of one call is the model's time plus reading the film, not a process start.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Labelled:
    """One film's answer: ``label_hw`` (Rows, Columns) uint8 {0, 1, 2} in the film's stored frame, ``score`` in
    [0, 1] (None when the bundle gives none), ``threshold`` the bundle's presence threshold."""

    label_hw: np.ndarray
    score: float | None
    threshold: float


class Labeller:
    """``inference.json`` held in memory; :meth:`label` runs it on one film.

    Args:
        bundle_root: the bundle (default: the repository's, as ``monaifrac infer`` finds it).
        model_file: weights (default ``<bundle_root>/models/model.pt``).
        configs: further configs of the bundle read after ``inference.json`` (``--network unet``: ``unet``).
        overrides: further config ids and values (``--set``), e.g. ``{"engine": "torch"}``.

    Raises:
        InputError: the weights are missing or unreadable (from the project's checkpoint reader).
    """

    def __init__(self, bundle_root: str | os.PathLike | None = None, model_file: str | os.PathLike | None = None,
                 configs: tuple[str, ...] = (), **overrides):
        import torch
        from monai.bundle import ConfigParser
        from monai.transforms import Compose, SaveImaged

        from monaifrac.bundle import config_path, find_bundle_root
        from monaifrac.checkpoints import model_state, read_checkpoint
        from monaifrac.dicom.results import SaveDicomResultsd
        from monaifrac.dicom.seg import SaveDicomSegd
        from monaifrac.io import InputError
        from monaifrac.transforms import SaveOverlayd

        root = str(bundle_root) if bundle_root is not None else find_bundle_root()
        parser = ConfigParser()
        parser.read_config([config_path("inference")] + [config_path(name) for name in configs])
        parser["bundle_root"] = root
        if model_file is not None:
            parser["model_file"] = str(model_file)
        parser["input_files"] = []  # nothing for the bundle's own dataloader: films come one by one
        for key, value in overrides.items():
            parser[key] = value
        self.model_file = Path(parser.get_parsed_content("model_file"))
        if not self.model_file.is_file():
            raise InputError(self.model_file, "no model file: train one (`monaifrac train DATASET_DIR`) or name "
                                              "one with --model")
        self.device = parser.get_parsed_content("device")
        self.threshold = float(parser.get_parsed_content("presence_threshold"))
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.inferer = parser.get_parsed_content("inferer")
        self.network = parser.get_parsed_content("network")
        self.network.load_state_dict(model_state(read_checkpoint(self.model_file), self.model_file))
        self.network.eval()
        from monaifrac.networks.onnx import ready

        ready([self.network])  # an ONNX engine exports (or finds) its file now, not at the first film
        writers = (SaveImaged, SaveOverlayd, SaveDicomSegd, SaveDicomResultsd)
        post = parser.get_parsed_content("postprocessing")
        self.postprocessing = Compose([t for t in post.transforms if not isinstance(t, writers)])
        self.image_key = parser.get_parsed_content("image_key")
        self._torch = torch
        self._identity: str | None = None
        self._warm_up()

    def _warm_up(self) -> None:
        """Label a small synthetic DX film once: the readers' imports (ITK: seconds), the engine's session
        and the first-call costs are paid here, so the first real film takes a film's time."""
        import tempfile

        from monaifrac.dicom.films import write_dx

        with tempfile.TemporaryDirectory(prefix="monaifrac-warm-up-") as tmp:
            ramp = np.add.outer(np.arange(96), np.arange(80)).astype(np.uint16) * 16
            write_dx(Path(tmp) / "warm-up.dcm", ramp, bits_stored=12)
            self.label(Path(tmp) / "warm-up.dcm")

    @property
    def identity(self) -> str:
        """A short hash of the weights file: which model labelled a film (it names the objects' UIDs)."""
        if self._identity is None:
            digest = hashlib.sha256()
            with open(self.model_file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            self._identity = digest.hexdigest()[:16]
        return self._identity

    def label(self, path: str | os.PathLike) -> Labelled:
        """Label the film at ``path`` (any film ``monaifrac infer`` reads).

        Raises:
            InputError: the film cannot be read (one line naming it), as the bundle's reader says.
        """
        from monai.data import decollate_batch, list_data_collate

        from monaifrac.inference import _check
        from monaifrac.io import from_monai_frame

        torch = self._torch
        _check(Path(path))  # the bundle's check of a film: unreadable, not 2D, NaN pixels -> InputError
        item = self.preprocessing({self.image_key: str(path)})
        batch = list_data_collate([item])
        with torch.no_grad():
            batch["pred"] = self.inferer(batch[self.image_key].to(self.device), self.network)
        out = self.postprocessing(decollate_batch(batch)[0])
        pred = np.asarray(out["pred"].detach().cpu() if hasattr(out["pred"], "detach") else out["pred"])
        pred = pred[0] if pred.ndim == 3 else pred  # (1, W, H) or (W, H): the MONAI frame
        score = out.get("fracture_score")
        return Labelled(from_monai_frame(pred).astype(np.uint8), None if score is None else float(score),
                        self.threshold)


__all__ = ("Labelled", "Labeller")
