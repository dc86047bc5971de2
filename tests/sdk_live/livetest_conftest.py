"""Copied over the SDK's ``tests/livetest/conftest.py``: points azure-eventhub's own live tests at
the local endpoint. The SDK's ``tests/conftest.py`` stays unchanged; pytest lets a conftest in a
sub-folder replace fixtures of the same name, and only these are replaced:

- ``live_eventhub``: instead of a fresh 2-partition hub made through the management plane, the
  next unused hub of the pool the endpoint serves (``eh-0001``..., 2 partitions each; each
  pytest-xdist worker takes a slice of its own).
- ``client_args``: the suite's own hook for redirecting clients; ``{"use_tls": False}`` (what
  ``UseDevelopmentEmulator=true`` sets), so most tests use plain AMQP on the endpoint's port.
  Tests that build clients without it use the production transports: AMQP over TLS on 5671 and
  WebSocket on 443 (80 without TLS), where ``run.sh`` starts them.
- ``connection_str`` and the ``invalid_*`` fixtures: the SDK's connection string pointed at the
  endpoint; ``invalid_hostname`` names a host that does not resolve.

Name resolution is limited to loopback names, so the hosts the tests invent fail to resolve here
instead of reaching the network. ``certifi.where()``, the SDK's default trust store, returns
``LOCAL_EH_CA_BUNDLE`` (certifi's roots and the endpoint's certificate) when it is set.
"""

from __future__ import annotations

import itertools
import os
import socket

import certifi
import pytest

_CONN = os.environ["LOCAL_EH_CONN"].strip()
_SETTINGS = dict(p.split("=", 1) for p in _CONN.split(";") if p)
_HOST = _SETTINGS["Endpoint"].split("://", 1)[1].rstrip("/")  # localhost:PORT
_KEY_NAME = _SETTINGS["SharedAccessKeyName"]
_KEY = _SETTINGS["SharedAccessKey"]
_POOL = int(os.environ.get("LOCAL_EH_HUBS", "400"))
# pytest-xdist workers (gw0, gw1, ...) take disjoint slices of the pool
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])
_SLICE = _POOL // _WORKERS
_NEXT = itertools.count(_WORKER * _SLICE + 1)
CONN_STR = (
    "Endpoint=sb://{}/;SharedAccessKeyName={};SharedAccessKey={};EntityPath={};"
    "UseDevelopmentEmulator=true"
)

_LOCAL = {"localhost", "127.0.0.1", "::1", None, ""}
_real_getaddrinfo = socket.getaddrinfo


def _loopback_only(host, *args, **kwargs):
    h = host.decode() if isinstance(host, bytes) else host
    if h not in _LOCAL and not (isinstance(h, str) and h.startswith("127.")):
        raise socket.gaierror(socket.EAI_NONAME, f"Name or service not known ({h}: loopback only)")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_only

if os.environ.get("LOCAL_EH_CA_BUNDLE"):
    _bundle = os.environ["LOCAL_EH_CA_BUNDLE"]
    certifi.where = lambda: _bundle


@pytest.fixture()
def live_eventhub():
    n = next(_NEXT)
    if n > (_WORKER + 1) * _SLICE:
        pytest.fail(f"this worker's {_SLICE} of the {_POOL} hubs are used up: raise LOCAL_EH_HUBS")
    hub = f"eh-{n:04d}"
    return {
        "resource_group": "local",
        "hostname": _HOST,
        "key_name": _KEY_NAME,
        "access_key": _KEY,
        "namespace": "local",
        "event_hub": hub,
        "consumer_group": "$Default",
        "partition": "0",
        "connection_str": f"{_CONN.rstrip(';')};EntityPath={hub}",
    }


@pytest.fixture()
def client_args():
    return {"use_tls": False}


@pytest.fixture()
def connection_str(live_eventhub):
    return CONN_STR.format(_HOST, _KEY_NAME, _KEY, live_eventhub["event_hub"])


@pytest.fixture()
def invalid_hostname(live_eventhub):
    return CONN_STR.format(
        "invalid123.servicebus.windows.net", _KEY_NAME, _KEY, live_eventhub["event_hub"]
    )


@pytest.fixture()
def invalid_key(live_eventhub):
    return CONN_STR.format(_HOST, _KEY_NAME, "invalid", live_eventhub["event_hub"])


@pytest.fixture()
def invalid_policy(live_eventhub):
    return CONN_STR.format(_HOST, "invalid", _KEY, live_eventhub["event_hub"])
