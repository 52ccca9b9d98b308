"""Checks of monaifrac.compat.monailabel, run by the MONAI Label environment's Python
(tests/integration/test_compat_monailabel.py starts it: pytest is not installed there).

Each check fails with an AssertionError naming the internal that moved; the script prints "ok" at the end.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import tempfile
from pathlib import Path


def _assigned(source: str) -> set[str]:
    """The private attributes a class's source assigns on ``self``."""
    return set(re.findall(r"self\.(_[a-z]\w*)\s*(?::[^=\n]+)?=[^=]", source))


def main() -> None:
    import monailabel
    from dicomweb_client.api import DICOMwebClient
    from monailabel.datastore.dicom import DICOMWebDatastore
    from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore

    from monaifrac.compat import monailabel as compat
    from monaifrac.serving.datastore import FilmDICOMwebDatastore

    assert monailabel.__version__ == compat.CHECKED_AGAINST, (
        f"monaifrac.compat.monailabel was checked against {compat.CHECKED_AGAINST}, {monailabel.__version__} is "
        "installed: re-read each of its functions, then set CHECKED_AGAINST")

    # what DICOMWebDatastore.__init__ sets is what init_dicomweb_datastore sets in its place
    dicomweb_fields = _assigned(inspect.getsource(DICOMWebDatastore.__init__))
    assert dicomweb_fields == {"_client", "_search_filter", "_fetch_by_frame", "_convert_to_nifti"}, dicomweb_fields
    local_init = inspect.signature(LocalDatastore.__init__).parameters
    assert {"datastore_path", "extensions", "auto_reload"} <= set(local_init), list(local_init)

    # the private names monaifrac's subclass gives itself must not be one of its bases' (a silent clash)
    base_names = _assigned(inspect.getsource(LocalDatastore)) | dicomweb_fields
    base_names |= {n for cls in (LocalDatastore, DICOMWebDatastore) for n in vars(cls) if n.startswith("_")}
    ours = _assigned(inspect.getsource(FilmDICOMwebDatastore))
    ours |= {n for n in vars(FilmDICOMwebDatastore) if n.startswith("_") and not n.startswith("__")
             and n != "_abc_impl"}  # every ABC's own
    assert not ours & base_names, f"FilmDICOMwebDatastore reuses private names of MONAI Label's: {ours & base_names}"

    class Store(DICOMWebDatastore):
        def __init__(self, client, path):  # noqa: D107 - DICOMWebDatastore.__init__ is bypassed on purpose
            compat.init_dicomweb_datastore(self, client, path, ("*.dcm", "*.png"), {"StudyDate": "2024*"})

    with tempfile.TemporaryDirectory() as tmp:
        client = DICOMwebClient(url="http://127.0.0.1:9/dicom-web")  # built, never asked: nothing listens there
        store = Store(client, tmp)
        assert store.name() == "http://127.0.0.1:9/dicom-web"  # DICOMWebDatastore.name() reads _client
        assert store._search_filter == {"StudyDate": "2024*"} and not store._convert_to_nifti
        assert getattr(store, "_observer", None) is None  # no file watcher
        assert Path(compat.image_folder(store)).resolve() == Path(tmp).resolve()
        labels = Path(compat.label_folder(store, "final"))
        assert labels.resolve() == (Path(tmp) / "labels" / "final").resolve()

        # bookkeeping changed under the lock is what a fresh LocalDatastore reads from datastore_v2.json
        (Path(tmp) / "1.2.3.dcm").write_bytes(b"film")
        labels.mkdir(parents=True, exist_ok=True)
        (labels / "1.2.3.png").write_bytes(b"label")
        with compat.updating_objects(store) as objects:
            objects["1.2.3"] = ImageLabelModel(image=DataModel(info={"name": "1.2.3.dcm", "ts": 1}, ext=".dcm"),
                                               labels={"final": DataModel(info={"name": "1.2.3.png"}, ext=".png")})
        assert "1.2.3" in compat.datastore_objects(store)
        fresh = LocalDatastore(tmp, extensions=("*.dcm", "*.png"), auto_reload=False)
        assert fresh.list_images() == ["1.2.3"]
        assert fresh.get_labeled_images() == ["1.2.3"]
        assert Path(fresh.get_label_uri("1.2.3", "final")).resolve() == (labels / "1.2.3.png").resolve()
        # an error inside the block writes nothing
        try:
            with compat.updating_objects(store) as objects:
                objects.pop("1.2.3")
                raise RuntimeError("stop")
        except RuntimeError:
            pass
        assert LocalDatastore(tmp, extensions=("*.dcm", "*.png"), auto_reload=False).list_images() == ["1.2.3"]

    # the task hooks monaifrac overrides still exist, with these parameters, and their class still calls them
    for module, cls_name, hook, params in compat.OVERRIDDEN_HOOKS:
        cls = getattr(importlib.import_module(module), cls_name)
        assert hook in vars(cls), f"{cls_name}.{hook} is gone"
        assert tuple(inspect.signature(getattr(cls, hook)).parameters) == params, (hook, params)
        assert f"self.{hook}(" in inspect.getsource(cls), f"{cls_name} no longer calls {hook}"
    print("ok")


if __name__ == "__main__":
    main()
    sys.exit(0)
