"""Shared fixtures: paths to the real files, and an emulated stack built from the template."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]

# Never reach real AWS from tests, whatever the machine's environment says.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "custseg-test",
        "POWERTOOLS_SERVICE_NAME": "custseg",
    }
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def stack() -> Iterator[object]:
    """A fresh emulated stack (moto, in process) built from infra/template.yaml."""
    from moto import mock_aws

    from custseg.local.stack import LocalStack

    with mock_aws():
        yield LocalStack().create()
