"""Shared, expensive fixtures of the bundle tests: ONE synthetic dataset, ONE trained bundle root.

Test modules import the helpers below from ``tests.integration.conftest``.

Every bundle command runs as a user types it (``python -m monai.bundle run ...``) from the
repository root, always with ``--bundle_root`` under pytest's temporary folder, so nothing is
written into ``bundle/``. Sizes are chosen for a 2-core CI runner: 16 synthetic films of
160 x 192, 64 x 64 patches, batch 2, no worker processes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from monaifrac.dicom.orthanc import PASSWORD_ENV, USER_ENV

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundle" / "configs"
TRAIN_JSON = "bundle/configs/train.json"
EVALUATE_JSON = "bundle/configs/evaluate.json"
INFERENCE_JSON = "bundle/configs/inference.json"
MULTI_GPU_JSON = "bundle/configs/multi_gpu_train.json"
BASIC_UNET_JSON = "bundle/configs/basic_unet.json"
UNET_JSON = "bundle/configs/unet.json"
PATCHES_JSON = "bundle/configs/patches.json"
METADATA_JSON = "bundle/configs/metadata.json"
SCHEMA_JSON = "bundle/schema/meta_schema.json"

N_FILMS = 16
SMALL = ["--patch_size", "[64,64]", "--num_workers", "0", "--batch_size", "2", "--film_max_side", "192",
         "--film_long_side", "192"]
TRAIN_EPOCHS = 2


def run_cmd(args: list[str], timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``args`` from the repository root; the result carries stdout+stderr in ``.stdout``."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, env=full_env)


def check_rc(proc: subprocess.CompletedProcess, expected: int = 0) -> str:
    assert proc.returncode == expected, (f"rc {proc.returncode} (expected {expected}) for {' '.join(proc.args)}\n"
                                         f"--- output tail ---\n{proc.stdout[-6000:]}")
    return proc.stdout


def bundle_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", *args]


@dataclass
class Prepared:
    atlas: Path  # synthetic FracAtlas layout
    dataset_dir: Path  # written by `prepare`
    summary: dict  # make_synthetic_fracatlas's summary
    datalist: dict

    def section(self, name: str) -> list[dict]:
        return self.datalist[name]


@dataclass
class Trained:
    prepared: Prepared
    bundle_root: Path
    log: str


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Prepared:
    from monaifrac.data.prepare import prepare
    from monaifrac.data.synth import make_synthetic_fracatlas

    root = tmp_path_factory.mktemp("bundle_data")
    summary = make_synthetic_fracatlas(root / "atlas", n=N_FILMS, seed=0)
    prepare(root / "atlas", root / "prepared", workers=1, progress=False)
    datalist = json.loads((root / "prepared" / "datalist.json").read_text())
    assert datalist["training"] and datalist["validation"], datalist
    return Prepared(root / "atlas", root / "prepared", summary, datalist)


@pytest.fixture(scope="session")
def trained(prepared, tmp_path_factory) -> Trained:
    """``train.json`` run for 2 epochs into a fresh bundle root (read-only for the tests that use it)."""
    bundle_root = tmp_path_factory.mktemp("bundle_root")
    proc = run_cmd(bundle_cmd("run", "--config_file", TRAIN_JSON, "--dataset_dir", str(prepared.dataset_dir),
                              "--bundle_root", str(bundle_root), "--max_epochs", str(TRAIN_EPOCHS), *SMALL),
                   timeout=400)
    log = check_rc(proc)
    return Trained(prepared, bundle_root, log)


def find_chromium() -> str:
    """Debian's chromium; installed with apt where it is missing and we may, else the calling test skips."""
    import shutil

    from monaifrac.dicom.orthanc import apt_install

    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    apt_install("chromium")
    if shutil.which("chromium"):
        return shutil.which("chromium")
    pytest.skip("no headless browser: install Debian's chromium (`apt-get install chromium`) to run the browser tests")


# the PACS credentials' environment variables, cleared around the PACS tests
PACS_ENV_NAMES = (USER_ENV, PASSWORD_ENV)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """A private Orthanc with DICOMweb on 127.0.0.1 (password on) for one test module, stopped after it;
    the PACS credentials' variables cleared meanwhile. Skips where Orthanc cannot be installed."""
    from monaifrac.dicom.orthanc import INSTALL_HINT, OrthancServer, ensure_orthanc_installed

    if not ensure_orthanc_installed():
        pytest.skip(f"no Orthanc with its DICOMweb plugin: {INSTALL_HINT}, to run the PACS tests")
    with pytest.MonkeyPatch.context() as mp:
        for name in PACS_ENV_NAMES:
            mp.delenv(name, raising=False)
        with OrthancServer(tmp_path_factory.mktemp("pacs")) as server:
            yield server


@pytest.fixture
def restore_logging():
    """In-process bundle runs apply ``logging.conf`` to the root logger; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)
