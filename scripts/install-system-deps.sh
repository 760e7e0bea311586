#!/usr/bin/env bash
# Install the Debian packages the test suite runs against, when missing:
# DCMTK (echoscu, findscu, storescu, wlmscpfs), Orthanc with its DICOMweb
# plugin, Chromium for the browser tests, ffmpeg for a test video clip,
# PostgreSQL for the second database backend, and Node.js with npm to build
# the image viewer.
set -euo pipefail

need=()
command -v findscu >/dev/null || need+=(dcmtk)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v Orthanc >/dev/null || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v pdftoppm >/dev/null || need+=(poppler-utils)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
# Node.js and npm build the image viewer (frontend/).
command -v npm >/dev/null || need+=(nodejs npm)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
