"""DICOMweb test fixtures: two sites, users per role with tokens, a stored CT series per site."""
import sys
from pathlib import Path

if str(Path(__file__).parent) not in sys.path:  # helper modules import under any pytest import mode
    sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from rest_framework.authtoken.models import Token

from dicomweb_factory import ct_datasets, write_files
from portal.accounts.models import Role, Site
from portal.accounts.services import create_account
from portal.imaging import dicomweb_access, dicomweb_query, fastpath
from portal.imaging.ingest import ingest_files
from portal.imaging.models import Series


@pytest.fixture(autouse=True)
def _fresh_dicomweb_caches():
    # Primary keys and tokens repeat across test databases; cached decisions must not leak between tests.
    dicomweb_access.clear_caches()
    fastpath.clear_cache()
    dicomweb_query.clear_cache()
    yield
    dicomweb_access.clear_caches()
    fastpath.clear_cache()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def sites(db):
    return Site.objects.create(code="int", name="Internal"), Site.objects.create(code="ext", name="External")


@pytest.fixture
def users(sites):
    return {
        "coord": create_account("coord", "pw-long-123", Role.COORDINATOR, ["int"]),
        "coord_ext": create_account("coordx", "pw-long-123", Role.COORDINATOR, ["ext"]),
        "worker": create_account("worker", "pw-long-123", Role.WORKER),
        "trainee": create_account("trainee", "pw-long-123", Role.TRAINEE, ["int"]),
        "admin": create_account("root", "pw-long-123", Role.ADMIN),
    }


@pytest.fixture
def tokens(users):
    return {name: Token.objects.create(user=user).key for name, user in users.items()}


@pytest.fixture
def stored(sites, users, tmp_path):
    """One 3-slice CT series at site 'int' and one 2-slice series at 'ext', ingested the normal way.
    Returns {"int": Series, "ext": Series, "int_paths": [stored files in slice order]}."""
    internal, external = sites
    ingest_files(write_files(tmp_path / "int", ct_datasets(3)), site=internal, user=users["coord"])
    ingest_files(write_files(tmp_path / "ext", ct_datasets(2, patient="PAT-EXT", patient_name="Other^Olga",
                                                           study_date="20190101", accession="ACC-X", description="CT pelvis")),
                 site=external, user=users["coord_ext"])
    return {"int": Series.objects.get(study__patient__site=internal), "ext": Series.objects.get(study__patient__site=external)}


@pytest.fixture
def live_dicomweb(transactional_db, settings):
    """The real ASGI stack (fast path over Django) under uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    import socket
    import threading
    import time

    import uvicorn
    from django.core.asgi import get_asgi_application

    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
    app = fastpath.wrap_http(get_asgi_application())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/dicomweb"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
    # Django and the fast path ran their database work in asgiref's single sync thread; close those connections
    # so the test database can be dropped (PostgreSQL refuses while a session is open).
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)
