"""monaifrac's MONAI Label app: the ``monaibundle`` sample app's shape, for the fracture bundle.

``monailabel start_server --app <this folder's copy> --studies DIR --conf models <name>`` loads
it (``scripts/monailabel-serve`` does all of that). What it adds to the sample app:

- every infer request is checked first (:mod:`monaifrac.serving.requests`): an upload that is not
  a whole, readable film gets 422 and its temporary file is removed; an image id that is a path
  gets 422 and an unknown one 404, and nothing outside the studies folder is read;
- inference drops the bundle's overlay writer as well as ``SaveImaged`` (a server would pile
  overlays up in the bundle folder) and returns the film's fracture score with the label;
- inference runs on ``inference.json``'s ``engine`` (ONNX Runtime on a CPU; ``--conf engine torch``
  chooses PyTorch): the ONNX file is cached beside ``model.pt`` under the weights' hash, so a model
  that training has just replaced is exported afresh at the next request, never served stale;
- training hands the bundle the datastore's films as they are (``train.json`` reads JPG/PNG
  with the project's reader), each with its id, so the bundle's checks name the film;
- ``--studies http(s)://.../dicom-web`` (``scripts/monailabel-serve --dicomweb URL``) serves the DX/CR
  films of a PACS through :class:`monaifrac.serving.datastore.FilmDICOMwebDatastore` instead of
  MONAI Label's DICOMweb datastore (which converts films to NIfTI and downloads dcmqi from
  GitHub): an image id is a film's Series Instance UID, a saved label goes back as a DICOM SEG,
  and a PACS out of reach gets 502/504 with one line, ``/info/`` still answering.

It runs in the MONAI Label environment (``scripts/monailabel-env.sh``), not in monaifrac's own.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict

import torch
from fastapi import HTTPException
from monai.transforms import SaveImaged

import monaifrac
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.train.bundle import BundleTrainTask
from monailabel.utils.others.generic import get_bundle_models, remove_file, strtobool
from monaifrac.serving.datastore import FilmDICOMwebDatastore
from monaifrac.serving.datastore import from_settings as dicomweb_datastore
from monaifrac.serving.requests import RequestError, check_film, is_upload, resolve_study
from monaifrac.dicom.results import SaveDicomResultsd
from monaifrac.dicom.seg import SaveDicomSegd
from monaifrac.networks.onnx import ENGINES, with_engine
from monaifrac.io import suffix_of
from monaifrac.metrics import CLASS_INDEX
from monaifrac.transforms import SaveOverlayd

logger = logging.getLogger(__name__)


class FractureInferTask(BundleInferTask):
    """The bundle's ``inference.json`` without its file writers; the score travels in the result."""

    def __init__(self, path: str, conf: Dict[str, str]):
        super().__init__(path, conf, post_filter=[SaveImaged, SaveOverlayd, SaveDicomSegd, SaveDicomResultsd])
        # channel_def names every output channel, the presence logit ("3") too; a label is a value of the
        # label map, which is the argmax of the class channels only
        self.labels = {name: value for name, value in self.labels.items() if value in CLASS_INDEX.values()}
        engine = conf.get("engine") or self.bundle_config.get_parsed_content("engine")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.engine = engine
        self._engine_network = None
        logger.info("inference engine: %s", engine)

    def _get_network(self, device, data):  # a private hook (monaifrac.compat.monailabel.OVERRIDDEN_HOOKS)
        # MONAI Label keeps one network per device and makes a new one when model.pt changes;
        # the engine's wrapper follows that network (a new one: a new ONNX file for its weights)
        network = super()._get_network(device, data)
        if self.engine == "torch" or network is None or not isinstance(network, torch.nn.Module):
            return network
        if self._engine_network is None or self._engine_network.network is not network:
            self._engine_network = with_engine(network, self.engine, self.get_path())
        return self._engine_network

    def writer(self, data, extension=None, dtype=None):
        # MONAI Label writes the label in the input's format: a JPG film would get a lossy JPG label
        if extension is None and not data.get("result_extension"):
            extension = ".png"
        if dtype is None and not data.get("result_dtype"):
            dtype = "uint8"
        label, params = super().writer(data, extension=extension, dtype=dtype)
        if "fracture_score" in data:
            params = dict(params or {}, fracture_score=float(data["fracture_score"]))
        return label, params


class FractureTrainTask(BundleTrainTask):
    """``train.json`` on the datastore's labelled films (image, label and the film's id)."""

    def _fetch_datalist(self, request, datastore):  # a private hook (monaifrac.compat.monailabel.OVERRIDDEN_HOOKS)
        return [{"image": d["image"], "label": d["label"], "id": _film_id(d["image"])}
                for d in datastore.datalist() if d]


def _film_id(path: str) -> str:
    """The datastore's id of a film file: its name without the suffix (``film_a.jpg`` -> ``film_a``; a PACS
    film ``1.2.840.5.dcm`` -> its Series Instance UID ``1.2.840.5``)."""
    name = Path(path).name
    suffix = suffix_of(name)
    return name[: -len(suffix)] if suffix else name


class MonaifracApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        self.models = get_bundle_models(app_dir, conf)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="monaifrac: fracture and bone segmentation on X-rays",
            description="MONAI bundle segmenting bone and fractures on musculoskeletal radiographs",
            version=monaifrac.__version__,
        )

    def init_infers(self) -> Dict[str, InferTask]:
        infers: Dict[str, InferTask] = {}
        for name, path in self.models.items():
            task = FractureInferTask(path, self.conf)
            if task.is_valid():
                infers[name] = task
        return infers

    def init_trainers(self) -> Dict[str, TrainTask]:
        if strtobool(self.conf.get("skip_trainers", "false")):
            return {}
        trainers: Dict[str, TrainTask] = {}
        for name, path in self.models.items():
            task = FractureTrainTask(path, self.conf)
            if task.is_valid():
                trainers[name] = task
        return trainers

    def init_remote_datastore(self):
        # a DICOMweb PACS: monaifrac's datastore of projection films, never MONAI Label's (it would
        # download dcmqi from GitHub at start and convert every film to NIfTI); XNAT and DSA as MONAI Label has them
        if settings.MONAI_LABEL_DATASTORE.lower() in ("xnat", "dsa"):
            return super().init_remote_datastore()
        store = dicomweb_datastore(self.studies, self.app_dir)
        problem = store.check_pacs()
        if problem:
            logger.warning("the PACS does not answer yet; requests that need it get 502/504 until it does: %s", problem)
        return store

    def init_strategies(self) -> Dict[str, Strategy]:
        return {"random": Random(), "first": First()}

    def infer(self, request, datastore=None):
        image = request.get("image")
        try:
            if not isinstance(image, str):
                raise RequestError(422, "image: expected a study id or an uploaded file")
            if is_upload(image):
                try:
                    check_film(image, name="uploaded file")
                except RequestError:
                    remove_file(image)  # the endpoint only removes it after a success
                    raise
            else:
                store = datastore or self.datastore()
                if not isinstance(store, FilmDICOMwebDatastore):  # a PACS's datastore checks its ids itself
                    resolve_study(image, store.list_images())
                check_film(store.get_image_uri(image), name=image)
        except RequestError as err:
            logger.warning("refused infer request: %s", err)
            raise HTTPException(status_code=err.status, detail=str(err)) from None
        return super().infer(request, datastore)
