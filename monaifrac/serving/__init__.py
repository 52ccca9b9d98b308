"""Serving the bundle in MONAI Label.

:mod:`monaifrac.serving.requests` checks what a client sends (uploaded films, image ids) with
the project's one reader and needs nothing beyond monaifrac; ``monaifrac/serving/app/`` is the
MONAI Label app (``main.py``), loaded by ``monailabel start_server --app`` in the MONAI Label
environment that ``scripts/monailabel-env.sh`` builds. ``scripts/monailabel-serve`` starts it.
:mod:`monaifrac.serving.datastore` (MONAI Label's environment only: it imports ``monailabel``) is
the app's datastore over a DICOMweb PACS (``scripts/monailabel-serve --dicomweb URL``).
:mod:`monaifrac.serving.watch` (``monaifrac pacs-watch``) gives each new film of a PACS its DICOM
results with the model held in-process by :mod:`monaifrac.serving.labeller`
(``monaifrac benchmark watch`` times film → results on a real Orthanc).
"""
