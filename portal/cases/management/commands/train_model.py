"""``manage.py train_model``: thin wrapper over the plain training CLI (``python -m segmentation.train``)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Train a segmentation model on the synthetic cohort (all options of python -m segmentation.train)."

    def add_arguments(self, parser):
        parser.add_argument("args", nargs="*", help="options passed to segmentation.train, e.g. --out m.pt --epochs 2")

    def run_from_argv(self, argv):
        # Forward everything after the command name untouched so both CLIs accept the same options.
        self._argv = argv[2:]
        super().run_from_argv(argv[:2])

    def handle(self, *args, **options):
        from segmentation.train import main

        argv = getattr(self, "_argv", None)
        if argv is None:  # call_command("train_model", "--", "--out", "m.pt", ...): options after "--"
            argv = list(args)
        try:
            main(argv, stdout=self.stdout)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise CommandError(str(exc)) from None
