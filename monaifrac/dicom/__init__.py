"""The hospital path: radiographs as DICOM, and the PACS they live in.

:mod:`monaifrac.dicom.films` writes a film as a DICOM Digital X-Ray object (DX, For
Presentation) with pydicom; :mod:`monaifrac.dicom.orthanc` starts a private Orthanc PACS
(DICOMweb only, on loopback, with a password) for tests and for ``scripts/pacs-serve``.
Reading a DICOM film stays in :func:`monaifrac.io.read_dicom`, the one reader every stage uses,
after :mod:`monaifrac.io.dicom` has checked the file with pydicom. :mod:`monaifrac.dicom.seg`
writes a film's label map as a DICOM Segmentation (highdicom; ``monaifrac infer --dicom-seg``),
:mod:`monaifrac.dicom.sr` its fractures as a TID 1500 Structured Report that OHIF draws over the film (both in
the words of :mod:`monaifrac.dicom.codes`), :mod:`monaifrac.dicom.sc` draws the result as a Secondary Capture,
:mod:`monaifrac.dicom.results` writes the kinds asked for (``monaifrac infer --dicom sr,sc,seg``), and
:mod:`monaifrac.dicom.web` moves films and results to and from a PACS by DICOMweb
(``monaifrac pacs-pull`` / ``pacs-push``). :mod:`monaifrac.dicom.seg_read` reads a SEG any tool wrote back
as a film's label map, and :mod:`monaifrac.dicom.labels` turns the SEGs of a PACS into a FracAtlas-layout
folder of training data (``monaifrac pacs-pull --labels``).
"""
