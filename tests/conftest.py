"""Shared fixtures: one real etcd for the whole run, a clean key space per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

RUN_ID = uuid.uuid4().hex[:4]


def pytest_collection_modifyitems(config, items):
    """Skip what this machine cannot run, with the reason, instead of failing obscurely."""
    is_root = os.geteuid() == 0
    has_etcd = shutil.which("etcd") is not None
    for item in items:
        if "root" in item.keywords and not is_root:
            item.add_marker(pytest.mark.skip(reason="needs root (namespaces, iptables)"))
        if "etcd" in item.keywords and not has_etcd:
            item.add_marker(pytest.mark.skip(reason="needs etcd (Debian etcd-server)"))


@pytest.fixture(scope="session")
def etcd_server():
    """A real etcd on loopback with its own ports and data dir, shared by the session."""
    from lab.etcd import local_etcd

    base = Path(tempfile.mkdtemp(prefix=f"calico-test-{RUN_ID}-"))
    server = local_etcd(base, name=f"test{RUN_ID}")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def datastore(etcd_server):
    """A Datastore on the session etcd, with the Calico key space emptied before each test."""
    from calico.datastore import Datastore

    ds = Datastore.connect(etcd_server.endpoints)
    ds.kv_delete_prefix("/calico/")
    try:
        yield ds
    finally:
        ds.kv_delete_prefix("/calico/")
        ds.close()
