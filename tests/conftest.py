"""Fixtures shared by the whole suite: the real sample dump and a local GCS emulator."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sample_dump() -> Path:
    """The real Wikipedia excerpt from the gensim wheel (downloaded once, then cached)."""
    from pipelines.sample import fetch_sample

    return fetch_sample()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_emulator():
    """A local GCS server (gcp-storage-emulator); yields a function that makes a fresh bucket."""
    port = _free_port()
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    proc = subprocess.Popen(
        [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    host = f"http://127.0.0.1:{port}"
    saved = {
        k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT")
    }
    os.environ["STORAGE_EMULATOR_HOST"] = host
    # gcsfs probes for hierarchical-namespace buckets and stalls against an emulator.
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                proc.kill()
                raise RuntimeError("gcp-storage-emulator did not start") from None
            time.sleep(0.2)
    # The emulator needs no credentials. Beam would otherwise look for Google credentials,
    # retrying with back-off for about 20 s, before falling back to an anonymous client.
    from apache_beam.internal.gcp import auth

    auth._Credentials._credentials_init = True
    auth._Credentials._credentials = None

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(credentials=AnonymousCredentials(), project="test")

    def make_bucket() -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        client.create_bucket(name)
        return name

    try:
        yield make_bucket
    finally:
        proc.kill()
        proc.wait()
        auth._Credentials._credentials_init = False
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
