"""manage.py import_dicom PATH [PATH ...] --site CODE: ingest files, folders (recursively) or zips."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from portal.accounts.models import Site
from portal.imaging.ingest import IngestError, ingest_files, ingest_zip


class Command(BaseCommand):
    help = "Validate, de-identify and store DICOM CT series and RTSTRUCTs (all files of one call are one transaction)."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--site", required=True, help="site code")
        parser.add_argument("--allow-partial", action="store_true",
                            help="accept RTSTRUCT contours on planes missing from the CT (dropped with a warning)")
        parser.add_argument("--skip-unsupported", action="store_true",
                            help="skip RTPLAN/RTDOSE/other modalities with a warning instead of rejecting the import")

    def handle(self, *args, paths, site, allow_partial, skip_unsupported, **options):
        site_row = Site.objects.filter(code=site).first()
        if site_row is None:
            raise CommandError(f"unknown site {site!r}")
        files, zips = [], []
        for raw in paths:
            path = Path(raw)
            if path.is_dir():
                files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            elif path.suffix.lower() == ".zip":
                zips.append(path)
            elif path.is_file():
                files.append(path)
            else:
                raise CommandError(f"no such file or folder: {raw}")
        options = dict(site=site_row, allow_partial=allow_partial, skip_unsupported=skip_unsupported)
        try:
            reports = []
            if files:
                reports.append(ingest_files(files, **options))
            for zip_path in zips:
                reports.append(ingest_zip(zip_path, zip_name=zip_path.name, **options))
        except IngestError as exc:
            for error in exc.errors:
                self.stderr.write(" | ".join(f"{k}: {v}" for k, v in error.items()))
            raise CommandError(f"import rejected ({len(exc.errors)} problem(s)); nothing was stored")
        for report in reports:
            for warning in report.warnings:
                self.stdout.write(f"warning: {warning.get('file', '')}: {warning['problem'][:500]}")
            self.stdout.write(f"stored {report.instances} instance(s) in {len(report.series)} new series, "
                              f"{len(report.structure_sets)} structure set(s), {len(report.rois)} ROI(s); "
                              f"{report.skipped_identical} already stored")
