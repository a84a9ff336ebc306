"""DICOM store: catalogue models, validated ingest, de-identification, RTSTRUCT rasterisation, DICOMweb and export."""
