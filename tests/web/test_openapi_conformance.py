"""schemathesis against /api/v1/openapi.json, in-process through the WSGI app: requests
generated from the document (valid and invalid) never get a server error, and every
answer matches what the document promises: status, content type, body and headers.

One check is left out: that every schema-valid request is accepted. JSON Schema's
"email" format admits reserved domains (a@b.test) that drip refuses on purpose, and
the document says so in words, not in a pattern."""

from __future__ import annotations

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.openapi import from_wsgi

from tests.tally import counted


@pytest.fixture
def database_kind() -> str:
    """SQLite only: the document describes the web layer, whatever the database."""
    return "sqlite"


def test_the_api_answers_as_its_openapi_document_says(unlimited_app: Flask) -> None:
    schema = from_wsgi("/api/v1/openapi.json", unlimited_app)
    cases = schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(
        GenerationMode.NEGATIVE
    )

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=cases)
    @counted("schemathesis (/api/v1/openapi.json)")
    def answers_as_documented(case: schemathesis.Case) -> None:
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    answers_as_documented()
