"""Imaging: DICOM ingest, de-identification, volumes, segmentation, surfaces (pure; see the imaging issue)."""
