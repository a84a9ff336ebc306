"""manage.py load_cohort DIR: catalogue a synthetic cohort written by make_cohort (idempotent)."""
from django.core.management.base import BaseCommand, CommandError

from portal.cases.loading import CohortError, load_cohort
from portal.imaging.ingest import IngestError


class Command(BaseCommand):
    help = "Ingest each case of DIR/cohort.json (CT + RTSTRUCT), create sites, cases, ground truth and contexts."

    def add_arguments(self, parser):
        parser.add_argument("folder")

    def handle(self, *args, folder, **options):
        try:
            report = load_cohort(folder, progress=self.stdout.write)
        except (CohortError, IngestError) as exc:
            raise CommandError(str(exc)) from None
        for warning in report.warnings:
            self.stdout.write(f"warning: {warning[:500]}")
        self.stdout.write(f"{len(report.created)} case(s) loaded, {len(report.skipped)} already present")
