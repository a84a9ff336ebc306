"""manage.py load_demo: generate the default demo cohort into var/, load it, create demo users, print logins."""
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portal.cases.loading import CohortError, create_demo_users, load_cohort
from portal.cases.management.commands.create_demo_users import print_logins
from portal.imaging.ingest import IngestError


class Command(BaseCommand):
    help = "Generate (once) and load the demo cohort, then create the demo users; running it again adds nothing."

    def add_arguments(self, parser):
        parser.add_argument("--folder", default=None, help="cohort folder (default: var/demo-cohort)")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, folder, seed, **options):
        from fixtures.cohort import write_demo_cohort

        out = Path(folder) if folder else Path(getattr(settings, "VAR_DIR", Path("var"))) / "demo-cohort"
        if not (out / "cohort.json").exists():
            if out.exists() and any(out.iterdir()):
                raise CommandError(f"{out} exists without a cohort.json; remove it or pass --folder")
            self.stdout.write(f"generating the demo cohort into {out} ...")
            write_demo_cohort(out, seed=seed, progress=self.stdout.write)
        try:
            report = load_cohort(out, progress=self.stdout.write)
        except (CohortError, IngestError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{len(report.created)} case(s) loaded, {len(report.skipped)} already present")
        print_logins(self.stdout, create_demo_users())
