"""DICOMweb: QIDO-RS search, WADO-RS retrieval and STOW-RS storage (PS3.18).

``routes`` is the HTTP adapter under ``/dicomweb``. The other modules hold
the protocol pieces it uses: ``json_model`` (the DICOM JSON Model, PS3.18
Annex F), ``multipart`` (``multipart/related`` bodies in both directions),
``qido`` (matching and return attributes over the study index), ``wado``
(instance bytes, frames and bulk data from the blob store) and ``stow``
(per-instance store results).
"""
