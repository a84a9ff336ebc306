"""DICOM catalogue: patients, studies, series, instances, structure sets and rasterised ROIs.

Files live under ``settings.CONTEXTRT_STORAGE`` at paths derived from UIDs only
(see ``portal.imaging.storage``), never from user-supplied names. Everything
stored here is already de-identified.
"""
from django.db import models

from portal.accounts.models import Site


class Patient(models.Model):
    pseudo_id = models.CharField(max_length=64, unique=True)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="patients")
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.pseudo_id


class Study(models.Model):
    study_uid = models.CharField(max_length=64, unique=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_date = models.DateField(null=True, blank=True)
    study_time = models.CharField(max_length=16, blank=True)
    accession_number = models.CharField(max_length=16, blank=True)
    study_id = models.CharField(max_length=16, blank=True)
    description = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "studies"


class Series(models.Model):
    series_uid = models.CharField(max_length=64, unique=True)
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="series")
    modality = models.CharField(max_length=16, db_index=True)
    series_number = models.IntegerField(null=True, blank=True)
    description = models.CharField(max_length=64, blank=True)
    frame_of_reference_uid = models.CharField(max_length=64, blank=True, db_index=True)
    # Geometry of a CT series (empty for RTSTRUCT/SEG series):
    rows = models.IntegerField(null=True, blank=True)
    columns = models.IntegerField(null=True, blank=True)
    pixel_spacing = models.JSONField(null=True, blank=True)  # [row spacing, column spacing] mm
    image_orientation = models.JSONField(null=True, blank=True)  # 6 direction cosines
    origin = models.JSONField(null=True, blank=True)  # IPP of the first slice (sorted along the normal)
    slice_spacing = models.FloatField(null=True, blank=True)  # mm along the normal
    num_slices = models.IntegerField(default=0)
    # Acquisition/site headers (for grouping by site from headers alone):
    institution_name = models.CharField(max_length=64, blank=True)
    manufacturer = models.CharField(max_length=64, blank=True)
    manufacturer_model = models.CharField(max_length=64, blank=True)
    kvp = models.FloatField(null=True, blank=True)
    convolution_kernel = models.CharField(max_length=64, blank=True)
    slice_thickness = models.FloatField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "series"


class Instance(models.Model):
    sop_uid = models.CharField(max_length=64, unique=True)
    series = models.ForeignKey(Series, on_delete=models.PROTECT, related_name="instances")
    sop_class_uid = models.CharField(max_length=64)
    instance_number = models.IntegerField(null=True, blank=True)
    slice_index = models.IntegerField(null=True, blank=True)  # 0-based order along the slice normal
    position = models.FloatField(null=True, blank=True)  # IPP projected on the slice normal (mm)
    transfer_syntax_uid = models.CharField(max_length=64)
    file_path = models.CharField(max_length=255)  # relative to CONTEXTRT_STORAGE, UID-derived
    file_size = models.BigIntegerField(default=0)
    # Uncompressed frame location inside the stored file (frames are served without re-parsing):
    pixel_offset = models.BigIntegerField(null=True, blank=True)
    pixel_length = models.BigIntegerField(null=True, blank=True)
    number_of_frames = models.IntegerField(default=1)
    metadata = models.JSONField(default=dict)  # DICOM JSON (PS3.18 F.2) without bulk data
    # SHA-256 of the file as uploaded (before de-identification): an identical re-upload is recognised and skipped.
    source_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["series", "slice_index"])]


class StructureSet(models.Model):
    class Source(models.TextChoices):
        IMPORTED = "imported", "Imported RTSTRUCT"
        GROUND_TRUTH = "ground_truth", "Ground truth"
        MODEL = "model", "Model output"

    instance = models.OneToOneField(Instance, null=True, blank=True, on_delete=models.PROTECT, related_name="structure_set")
    ct_series = models.ForeignKey(Series, on_delete=models.PROTECT, related_name="structure_sets")
    label = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.IMPORTED)
    warnings = models.JSONField(default=list)  # reported, not rejected (e.g. unresolved ContourImageSequence refs)
    created = models.DateTimeField(auto_now_add=True)


class ROI(models.Model):
    structure_set = models.ForeignKey(StructureSet, on_delete=models.CASCADE, related_name="rois")
    number = models.IntegerField()
    name = models.CharField(max_length=64)
    interpreted_type = models.CharField(max_length=32, blank=True)
    color = models.JSONField(null=True, blank=True)  # [r, g, b]
    mask_path = models.CharField(max_length=255, blank=True)  # .npy/.npz on the CT grid, relative to storage
    voxel_count = models.BigIntegerField(default=0)
    volume_cc = models.FloatField(default=0.0)
    empty = models.BooleanField(default=False)

    class Meta:
        unique_together = [("structure_set", "number")]
        verbose_name = "ROI"


class ReidentificationEntry(models.Model):
    """Original -> pseudonymous identifier map, readable by admins only."""

    kind = models.CharField(max_length=32)  # "uid", "patient_id", "patient_name", "accession", "date_shift"
    original = models.CharField(max_length=256)
    pseudonym = models.CharField(max_length=256)
    patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.CASCADE)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        unique_together = [("kind", "original")]
