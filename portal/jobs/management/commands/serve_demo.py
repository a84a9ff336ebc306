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
