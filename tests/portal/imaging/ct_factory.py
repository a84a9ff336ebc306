"""Small synthetic CT series written with pydicom, for bad-input and API tests."""
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def write_ct_series(folder: Path, n: int = 4, *, size: int = 16, spacing: float = 2.0, patient: str = "PAT-1",
                    series_uid: str | None = None, study_uid: str | None = None, frame_uid: str | None = None,
                    pixel_spacing=(0.8, 0.8), prefix: str = "ct") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    paths = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", patient, "19600101"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.AccessionNumber, ds.ReferringPhysicianName = "20200315", "ACC123", "House^Greg"
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-10.0, -10.0, k * spacing]
        ds.PixelSpacing = list(pixel_spacing)
        ds.SliceThickness = spacing
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        pixels = (np.arange(size * size, dtype=np.int16).reshape(size, size) + 100 * k).astype(np.int16)
        ds.PixelData = pixels.tobytes()
        path = folder / f"{prefix}{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
