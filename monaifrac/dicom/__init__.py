"""The hospital path: radiographs as DICOM, and the PACS they live in.

:mod:`monaifrac.dicom.films` writes a film as a DICOM Digital X-Ray object (DX, For
Presentation) with pydicom; :mod:`monaifrac.dicom.orthanc` starts a private Orthanc PACS
(DICOMweb only, on loopback, with a password) for tests and for ``scripts/pacs-serve``.
Reading a DICOM film stays in :func:`monaifrac.io.read_dicom`, the one reader every stage uses.
DICOM SEG (the label maps going back to the PACS, with highdicom) will live here too.
"""
