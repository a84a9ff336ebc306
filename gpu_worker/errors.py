"""Error classes that decide retry behaviour: transient ones are retried with backoff, the rest fail the job."""


class TransientError(Exception):
    """Network trouble or a 5xx from the portal: worth another try later."""


class BadInput(Exception):
    """The job cannot succeed as submitted (missing CT, bad geometry, unknown checkpoint): fail with this message."""


def is_transient(retries: int, exc: BaseException) -> bool:
    """Dramatiq ``retry_when``: only transient errors, at most MAX_RETRIES times."""
    import os

    return isinstance(exc, TransientError) and retries < int(os.environ.get("CONTEXTRT_JOB_MAX_RETRIES", 5))
