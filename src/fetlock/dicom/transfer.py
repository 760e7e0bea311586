"""Transfer syntaxes accepted for the non-storage services (PS3.5 Section 10)."""

from __future__ import annotations

from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

# Listed in order of preference; Implicit VR Little Endian is the default
# transfer syntax every DICOM node must support.
ACCEPTED_TRANSFER_SYNTAXES: list[str | UID] = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]
