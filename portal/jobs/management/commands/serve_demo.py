"""manage.py serve_demo: the portal (portal.asgi under uvicorn) with an in-process job worker; prints demo logins."""
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the portal with an in-process worker (embedded default), e.g. for `make demo`."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--worker-threads", type=int, default=1)
        parser.add_argument("--no-logins", action="store_true", help="do not (re)create and print the demo logins")

    def handle(self, *args, **options):
        import uvicorn

        from gpu_worker import broker, dispatch
        from portal.jobs import services

        if not options["no_logins"]:
            from portal.cases.loading import create_demo_users
            from portal.cases.management.commands.create_demo_users import print_logins

            print_logins(self.stdout, create_demo_users())
        if broker.is_in_process():
            self._warm_up()
            dispatch.start_in_process_worker(options["worker_threads"])
            resent = services.requeue_unfinished()
            self.stdout.write(f"in-process worker started ({options['worker_threads']} thread(s)); "
                              f"{resent} unfinished job(s) re-queued")
        else:
            self.stdout.write("BROKER_URL is set: start workers with `manage.py run_worker --queues gpu`")
        self.stdout.write(f"ContextRT portal on http://{options['host']}:{options['port']}/")
        self.stdout.flush()  # the logins must show before uvicorn takes over the process
        uvicorn.run("portal.asgi:application", host=options["host"], port=options["port"], lifespan="off",
                    ws="websockets", log_level="warning")

    def _warm_up(self):
        """Have the in-process worker load the default checkpoint of each cancer type when it boots
        (``CONTEXTRT_WARM_CHECKPOINTS`` wins when set), and load the metric kernels, both in the background:
        the first job then takes under a second instead of about 4 s (docs/workers.md)."""
        import os
        import threading

        from clinical import CANCER_TYPES
        from evaluation.metrics import warm_kernels
        from gpu_worker.warmup import WARM_CHECKPOINTS_ENV, warm_checkpoint_names
        from portal.jobs import services

        names = warm_checkpoint_names()
        if not names:
            try:
                names = list(dict.fromkeys(services.default_checkpoint(t) for t in CANCER_TYPES))
            except services.JobError:
                names = []  # no checkpoint at all: jobs will say so
            os.environ[WARM_CHECKPOINTS_ENV] = ",".join(names)
        threading.Thread(target=warm_kernels, name="contextrt-warm-metrics", daemon=True).start()
        if names:
            self.stdout.write(f"warming up in the background: {', '.join(names)}")
