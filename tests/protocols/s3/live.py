"""Helpers for tests against a live ``tier0 serve``: credentials, clients, error codes.

The fixtures (``server``, ``s3``, ``bucket``) live in this folder's conftest;
one server is started per test module.
"""

from __future__ import annotations

import itertools
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

ACCESS = "T0GATEWAYTESTROOTKEY"
SECRET = "gateway-test-secret-0123456789abcdefghij"
REGION = "us-east-1"

bucket_numbers = itertools.count(1)


def make_client(url: str, *, secret: str = SECRET, access: str = ACCESS, **config: Any) -> Any:
    """A boto3 S3 client with its default behaviour (checksums included), path-style, no retries."""
    config.setdefault("s3", {"addressing_style": "path"})
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, **config),
    )


def error_code(error: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    """(S3 error code, HTTP status) of a failed boto3 call."""
    response = error.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]
