"""manage.py import_llmseg DIR --table FILE --site CODE: LLMSeg NIfTI layout -> DICOM series, ground truth, cases."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from portal.accounts.models import Site
from portal.imaging.ingest import IngestError
from portal.imaging.ingest_llmseg import LLMSegError, import_llmseg


class Command(BaseCommand):
    help = "Import <id>/data.nii.gz + label.nii.gz folders and their clinical table (xlsx/csv) as breast cases."

    def add_arguments(self, parser):
        parser.add_argument("directory")
        parser.add_argument("--table", required=True)
        parser.add_argument("--site", required=True)
        parser.add_argument("--cohort", default="train")

    def handle(self, *args, directory, table, site, cohort, **options):
        site_row = Site.objects.filter(code=site).first()
        if site_row is None:
            raise CommandError(f"unknown site {site!r}")
        if not Path(directory).is_dir() or not Path(table).is_file():
            raise CommandError("DIR must be a folder and --table a file")
        try:
            imported = import_llmseg(Path(directory), Path(table), site=site_row, cohort=cohort)
        except LLMSegError as exc:
            raise CommandError(str(exc))
        except IngestError as exc:
            raise CommandError(str(exc))
        for item in imported:
            self.stdout.write(f"case {item.case_id}: {item.roi_voxels} label voxels, context {item.context}"
                              + "".join(f"; warning: {w}" for w in item.warnings))
        self.stdout.write(f"imported {len(imported)} patient(s)")
