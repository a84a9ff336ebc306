"""De-identification on ingest: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile.

Implements the profile's action table for the attributes that occur in CT
images and RT Structure Sets, with these options (each recorded in
DeidentificationMethodCodeSequence):

* 113107 Retain Longitudinal Temporal Information with Modified Dates: every
  DA/DT value is shifted by a per-patient number of days (consistent across
  uploads), times are kept, so intervals between studies survive;
* 113109 Retain Device Identity and 113112 Retain Institution Identity: the
  portal groups cases by site and scanner from headers alone.

Actions: PatientName/PatientID become the pseudonym (D); UIDs (U) are remapped
through one persistent original->pseudonym map so references between
instances, including those inside RTSTRUCT sequences, keep resolving; other
person names and identifying IDs are emptied (Z) or removed (X); private
attributes and overlays are removed. The map lives in ReidentificationEntry
(admin-only). This module only plans and applies; the ingest transaction
persists the new map entries.
"""
from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

DEIDENTIFICATION_METHOD = "PS3.15 E.1 Basic; Modified Dates; Retain Device, Institution"
PROFILE_CODES = [
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113109", "Retain Device Identity Option"),
    ("113112", "Retain Institution Identity Option"),
]

# UI attributes that name a definition (SOP class, transfer syntax, coding scheme), not an instance: kept.
_KEPT_UID_KEYWORDS = {
    "SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID", "ImplementationClassUID",
    "CodingSchemeUID", "ContextUID", "MappingResourceUID", "ContextGroupExtensionCreatorUID",
    "PrivateInformationCreatorUID", "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID",
    "ReferencedTransferSyntaxUIDInFile", "ReferencedSOPClassUIDInFile", "SOPClassesInStudy",
}
_WELL_KNOWN_UID_ROOT = "1.2.840.10008."
_PIXEL_DATA = 0x7FE00010

# X (remove) in the Basic Profile, for attributes found in CT / RTSTRUCT objects (not retained by our options).
_REMOVE = [
    "PatientAddress", "PatientTelephoneNumbers", "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames",
    "PatientBirthName", "PatientMotherBirthName", "PatientBirthTime", "MedicalRecordLocator", "MilitaryRank",
    "BranchOfService", "CountryOfResidence", "RegionOfResidence", "EthnicGroup", "Occupation", "PatientReligiousPreference",
    "AdditionalPatientHistory", "PatientComments", "PatientAge", "PatientSize", "PatientWeight", "MedicalAlerts",
    "Allergies", "PregnancyStatus", "SmokingStatus", "LastMenstrualDate", "PatientState", "IssuerOfPatientID",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence",
    "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence", "OperatorIdentificationSequence", "RequestingPhysician",
    "RequestingService", "RequestedProcedureDescription", "RequestedProcedureID", "RequestAttributesSequence",
    "ScheduledProcedureStepID", "PerformedProcedureStepID", "PerformedProcedureStepDescription",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "AdmissionID", "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence", "ServiceEpisodeID", "ServiceEpisodeDescription", "ReasonForStudy",
    "ReasonForTheRequestedProcedure", "StudyComments", "ImageComments", "StudyDescription", "SeriesDescription",
    "ProtocolName", "AcquisitionComments", "DerivationDescription", "TextComments", "InterpretationText",
    "StructureSetDescription", "ROIDescription", "ROIGenerationDescription", "ROIObservationDescription",
    "StructureSetName", "FrameComments", "CurrentPatientLocation", "PatientInstitutionResidence",
    "ReferencedPatientSequence", "ReferencedPatientPhotoSequence", "ResponsibleOrganization", "ResponsiblePerson",
    "InsurancePlanIdentification", "PersonAddress", "PersonTelephoneNumbers", "VisitComments", "PatientInsurancePlanCodeSequence",
    "DigitalSignaturesSequence", "DataSetTrailingPadding", "OriginalAttributesSequence", "ModifiedAttributesSequence",
]
# Z (empty) in the Basic Profile.
_EMPTY = ["PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName", "ContentCreatorName"]


def new_uid() -> str:
    """A fresh UID under the 2.25 (UUID) root: never collides, carries no institution root."""
    return f"2.25.{uuid.uuid4().int}"


@dataclass
class PatientPseudonym:
    pseudo_id: str
    date_shift_days: int
    is_new: bool


@dataclass
class DeidPlan:
    """Pseudonyms for one ingest; ``uid_map`` holds both stored and newly minted entries."""

    uid_map: dict[str, str] = field(default_factory=dict)
    new_uids: dict[str, str] = field(default_factory=dict)

    def uid(self, original: str) -> str:
        original = str(original).strip()
        if not original or original.startswith(_WELL_KNOWN_UID_ROOT):
            return original
        mapped = self.uid_map.get(original)
        if mapped is None:
            mapped = self.uid_map[original] = self.new_uids[original] = new_uid()
        return mapped


def new_patient_pseudonym() -> PatientPseudonym:
    # Shift dates back by 1..10 years, a whole number of weeks so weekdays are kept.
    return PatientPseudonym(pseudo_id="CRT-" + secrets.token_hex(5).upper(),
                            date_shift_days=-7 * (52 + secrets.randbelow(470)), is_new=True)


def _shift_da(value: str, days: int) -> str:
    value = str(value).strip()
    if len(value) < 8:
        return ""
    try:
        date = dt.datetime.strptime(value[:8], "%Y%m%d").date()
    except ValueError:
        return ""  # an unparseable date cannot be shifted, so it is emptied
    return (date + dt.timedelta(days=days)).strftime("%Y%m%d")


def _shift_dt(value: str, days: int) -> str:
    value = str(value).strip()
    shifted = _shift_da(value[:8], days)
    return shifted + value[8:] if shifted else ""


def _is_remapped_uid(elem) -> bool:
    return elem.VR == "UI" and elem.keyword not in _KEPT_UID_KEYWORDS


def collect_uids(ds: Dataset, into: set[str] | None = None) -> set[str]:
    """Every UID value that ``deidentify`` would remap (so stored pseudonyms can be looked up first)."""
    into = set() if into is None else into
    for tag in ds.keys():
        if tag == _PIXEL_DATA or tag.is_private:
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value or []:
                collect_uids(item, into)
        elif elem.value not in (None, "", b"") and _is_remapped_uid(elem):
            values = elem.value if elem.VM > 1 else [elem.value]
            into.update(str(v).strip() for v in values if str(v).strip() and not str(v).startswith(_WELL_KNOWN_UID_ROOT))
    return into


def _walk(ds: Dataset, plan: DeidPlan, shift_days: int) -> None:
    for keyword in _REMOVE:
        if keyword in ds:
            delattr(ds, keyword)
    for keyword in _EMPTY:
        if keyword in ds:
            ds[keyword].value = ""
    for tag in list(ds.keys()):
        if tag == _PIXEL_DATA:
            continue  # never loaded here: it may still be deferred in the uploaded file
        if tag.is_private or tag.group & 0xFF00 in (0x6000, 0x5000):  # private attributes, overlays, curves
            del ds[tag]
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value or []:
                _walk(item, plan, shift_days)
        elif elem.value in (None, "", b""):
            continue
        elif _is_remapped_uid(elem):
            if elem.VM > 1:
                elem.value = [plan.uid(v) for v in elem.value]
            else:
                elem.value = plan.uid(elem.value)
        elif elem.VR == "PN" and elem.keyword != "PatientName":
            elem.value = ""
        elif elem.VR == "DA":
            elem.value = [_shift_da(v, shift_days) for v in elem.value] if elem.VM > 1 else _shift_da(elem.value, shift_days)
        elif elem.VR == "DT":
            elem.value = [_shift_dt(v, shift_days) for v in elem.value] if elem.VM > 1 else _shift_dt(elem.value, shift_days)


def deidentify(ds: Dataset, plan: DeidPlan, patient: PatientPseudonym) -> Dataset:
    """De-identify ``ds`` in place (and its file meta) and return it."""
    _walk(ds, plan, patient.date_shift_days)
    ds.PatientName = patient.pseudo_id
    ds.PatientID = patient.pseudo_id
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    codes = []
    for value, meaning in PROFILE_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(codes)
    if getattr(ds, "file_meta", None) is not None and "MediaStorageSOPInstanceUID" in ds.file_meta:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds
