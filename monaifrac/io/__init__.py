"""Reading radiographs and writing outputs, in one pixel frame for every stage.

The frame
---------
A film is read in its *displayed* orientation: the EXIF orientation tag of a JPG is
applied, because FracAtlas draws its polygons on the displayed image (IMG0002628,
IMG0002588). Colour films are reduced to one grey channel.

Two array layouts appear in monaifrac, and this module is the only place that converts
between them:

* ``(H, W)`` row-major, as PIL, pycocotools and scikit-image see an image. The data stage
  (masks, pseudo-labels) works in this layout.
* ``(W, H)``, x first, as MONAI's PIL and ITK readers return 2D images ("reverse indexing").
  Everything handed to MONAI is in this layout: the prepared NIfTI files, the arrays
  :class:`RadiographReader` returns, and therefore every tensor in training and inference.
  MONAI's writers transpose back, so a saved PNG has the film's own width and height.

:func:`to_monai_frame` / :func:`from_monai_frame` (``frame.py``) are the two conversions.

One module a concern, every name importable from here (the name the bundle's configs use,
``monaifrac.io.RadiographReader``): ``read.py`` (films and label maps), ``dicom.py`` (the
pydicom check of a DICOM film before ITK reads it), ``write.py`` (atomic writes), ``names.py``
(a file name's suffix and film id), ``frame.py``; the error every reader raises is
:class:`monaifrac.errors.InputError`.
"""

from monaifrac.errors import InputError
from monaifrac.io.frame import from_monai_frame, to_monai_frame
from monaifrac.io.names import film_stem, suffix_of
from monaifrac.io.read import (DICOM_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES, RadiographReader, ReadInfo,
                               is_dicom_file, read_dicom, read_label_map, read_nifti, read_radiograph, read_raster)
from monaifrac.io.write import (AtomicPILWriter, atomic_path, remove_temporaries, write_json, write_nifti, write_png,
                                write_text)

__all__ = ["InputError", "from_monai_frame", "to_monai_frame", "film_stem", "suffix_of", "DICOM_SUFFIXES",
           "NIFTI_SUFFIXES", "RASTER_SUFFIXES", "RadiographReader", "ReadInfo", "is_dicom_file", "read_dicom",
           "read_label_map", "read_nifti", "read_radiograph", "read_raster", "AtomicPILWriter", "atomic_path",
           "remove_temporaries", "write_json", "write_nifti", "write_png", "write_text"]
