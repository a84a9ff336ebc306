"""Synthetic CT instances written with pydicom for the DICOMweb tests (distinct pixel values per slice)."""
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def ct_datasets(n: int = 3, *, size: int = 32, patient: str = "PAT-DW", patient_name: str = "Roe^Richard",
                study_date: str = "20210612", accession: str = "ACC-DW", description: str = "CT chest") -> list[FileDataset]:
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    out = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID, ds.PatientSex = patient_name, patient, "M"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = study_date, "101500", accession
        ds.StudyDescription, ds.SeriesDescription, ds.SeriesNumber = description, "axial", 2
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-10.0, -10.0, k * 2.5]
        ds.PixelSpacing = [0.9, 0.9]
        ds.SliceThickness = 2.5
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        pixels = (np.arange(size * size, dtype=np.int32).reshape(size, size) * 3 % 2000 + 37 * k).astype(np.int16)
        ds.PixelData = pixels.tobytes()
        out.append(ds)
    return out


def write_files(folder: Path, datasets) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
