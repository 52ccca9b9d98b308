"""MONAI Label internals, each behind one function. Checked against monailabel 0.8.5.

Imported only in MONAI Label's own environment (``scripts/monailabel-env.sh``), by
:mod:`monaifrac.serving.datastore`; ``tests/integration/test_compat_monailabel.py`` checks it there.

* :func:`init_dicomweb_datastore` sets up a ``DICOMWebDatastore`` subclass without running
  ``DICOMWebDatastore.__init__``, which would start a file watcher and name a NIfTI conversion;
* :func:`image_folder`, :func:`label_folder`, :func:`datastore_objects` read the local bookkeeping
  of a ``LocalDatastore`` (``datastore_v2.json``), :func:`updating_objects` changes it under its lock;
* :data:`OVERRIDDEN_HOOKS`: the private methods of MONAI Label's tasks that
  :mod:`monaifrac.serving.app.main` overrides (a hook cannot be wrapped; the test checks that the
  installed MONAI Label still has and calls each).
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, Sequence

from filelock import FileLock
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore

CHECKED_AGAINST = "0.8.5"  # what each function below was read against (tests/integration/test_compat_monailabel.py)

#: (module, class, method, parameters): private task hooks monaifrac overrides, and their signatures
OVERRIDDEN_HOOKS = (
    ("monailabel.tasks.infer.basic_infer", "BasicInferTask", "_get_network", ("self", "device", "data")),
    ("monailabel.tasks.train.bundle", "BundleTrainTask", "_fetch_datalist", ("self", "request", "datastore")),
)


def init_dicomweb_datastore(store: DICOMWebDatastore, client, datastore_path: str, extensions: Sequence[str],
                            search_filter: Dict[str, Any] | None = None) -> None:
    """Initialise ``store``, an instance of a ``DICOMWebDatastore`` subclass, in place of its ``__init__``.

    Sets what the ``DICOMWebDatastore`` methods it inherits read (0.8.5: ``_client``, ``name()``'s URL;
    ``_search_filter``; ``_fetch_by_frame`` and ``_convert_to_nifti`` off), then runs
    ``LocalDatastore.__init__`` on ``datastore_path`` with ``extensions`` and no file watcher.
    """
    store._client = client
    store._search_filter = dict(search_filter or {})
    store._fetch_by_frame = False
    store._convert_to_nifti = False
    LocalDatastore.__init__(store, datastore_path=datastore_path, extensions=tuple(extensions), auto_reload=False)


def image_folder(store: LocalDatastore) -> str:
    """The folder of a ``LocalDatastore``'s images (0.8.5: ``_datastore.image_path()``)."""
    return store._datastore.image_path()


def label_folder(store: LocalDatastore, tag: str) -> str:
    """The folder of a ``LocalDatastore``'s labels of ``tag`` (0.8.5: ``_datastore.label_path(tag)``)."""
    return store._datastore.label_path(tag)


def datastore_objects(store: LocalDatastore) -> dict:
    """A ``LocalDatastore``'s images and labels as last read, id -> ``ImageLabelModel`` (0.8.5:
    ``_datastore.objects``); read only: change them through :func:`updating_objects`."""
    return store._datastore.objects


@contextlib.contextmanager
def updating_objects(store: LocalDatastore) -> Iterator[dict]:
    """Change a ``LocalDatastore``'s bookkeeping: reload ``datastore_v2.json``, hold its lock, yield the
    objects (id -> ``ImageLabelModel``) and write the file back once the block ends without an error.

    0.8.5: ``_init_from_datastore_file()`` (which takes the lock itself), ``FileLock(_lock_file)``,
    ``_datastore.objects`` and ``_update_datastore_file(lock=False)``.
    """
    store._init_from_datastore_file()
    with FileLock(store._lock_file):
        yield store._datastore.objects
        store._update_datastore_file(lock=False)
