"""Names shared by the DICOMweb client (:mod:`monaifrac.dicom.web`) and the test PACS launcher
(:mod:`monaifrac.dicom.orthanc`), kept apart from both so that the client used in production
imports nothing of the launcher (which installs and runs Orthanc).
"""

# the environment variables holding the PACS's HTTP basic-authentication user and password: the
# client reads them when no --user/--password is given; the launcher configures Orthanc with them
USER_ENV, PASSWORD_ENV = "MONAIFRAC_PACS_USER", "MONAIFRAC_PACS_PASSWORD"
DICOMWEB_ROOT = "/dicom-web/"  # where a PACS the project starts serves QIDO-RS, WADO-RS and STOW-RS
