"""``manage.py make_cohort``: write the synthetic multi-site cohort (thin wrapper over fixtures.cohort.write_cohort)."""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from fixtures.__main__ import parse_shape, split_list
from fixtures.cohort import CANCER_TYPES, DEMO, write_cohort
from fixtures.sites import SITES


class Command(BaseCommand):
    help = "Write a synthetic multi-site planning-CT cohort (DICOM, RTSTRUCT, NIfTI, tables, cohort.json)."

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="output folder (must be new or empty)")
        parser.add_argument("--sites", nargs="+", default=list(SITES),
                            help=f"site keys ({', '.join(SITES)}); space- or comma-separated")
        parser.add_argument("--cases-per-site", type=int, default=DEMO["cases_per_site"])
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--cancer", default=",".join(CANCER_TYPES), help="comma-separated: breast,prostate")
        parser.add_argument("--shape", default=str(DEMO["shape"]), help="in-plane N, RxC or SxRxC")

    def handle(self, *args, **options):
        sites = [s for item in options["sites"] for s in split_list(item)]
        started = time.monotonic()
        try:
            manifest = write_cohort(options["out"], sites=sites, cases_per_site=options["cases_per_site"],
                                    seed=options["seed"], cancer_types=split_list(options["cancer"]),
                                    shape=parse_shape(options["shape"]),
                                    progress=lambda line: self.stdout.write(line) if options["verbosity"] > 1 else None)
        except (ValueError, FileExistsError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(
            f"{len(manifest['cases'])} cases written to {options['out']} in {time.monotonic() - started:.1f} s"))
