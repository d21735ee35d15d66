"""Generated hostile input for every public way in (Hypothesis): the signup form and JSON
API, the confirm, unsubscribe and privacy links, and the admin's lesson check. Whatever
arrives, the answer is never a server error, and a refused request writes no row.

Examples are bounded so the module runs in seconds; each test's tally of inputs tried
and failed is printed at the end of the run (tests/tally.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from drip.db import reading
from drip.errors import InvalidInput
from drip.lessons import check_lesson
from drip.models.base import Base
from drip.rendering import EmailTemplate, Renderer
from drip.tokens import CONFIRM, PRIVACY, UNSUBSCRIBE, Tokens
from drip.wiring import make_renderer
from tests.helpers import System
from tests.tally import counted

BOUNDED = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FIELDS = ("email", "first_name", "timezone", "sequence", "website")

texts = st.text(max_size=80)
huge_texts = st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(1_000, 80_000))
emails = st.emails().map(str)
field_texts = st.one_of(texts, emails, huge_texts, st.sampled_from(["UTC", "Europe/Berlin", ""]))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), texts)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
nested_json = st.integers(1, 3_000).map(lambda depth: '{"email":' + "[" * depth + "]" * depth)
tokens = st.one_of(texts, st.binary(max_size=60).map(lambda b: b.hex()), huge_texts)
id_lists = st.lists(st.integers(-(2**70), 2**70), max_size=3)


@pytest.fixture
def database_kind() -> str:
    """SQLite only: the properties are about the web layer's answers, not the dialect."""
    return "sqlite"


def row_counts(system: System) -> dict[str, int]:
    with reading(system.sessions) as session:
        return {
            table.name: session.scalar(sa.select(sa.func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


def assert_clean(
    system: System, *requests: Callable[[], TestResponse], accepted: frozenset[int] = frozenset()
) -> None:
    """Never a server error; and unless an answer is one of `accepted`, no row written."""
    before = row_counts(system)
    statuses = [request().status_code for request in requests]
    assert max(statuses) < 500, statuses
    if not accepted.intersection(statuses):
        assert row_counts(system) == before, statuses


@BOUNDED
@given(
    form=st.dictionaries(st.sampled_from(FIELDS), field_texts, max_size=5),
    raw=st.none() | st.binary(max_size=300),
)
@counted("signup form (POST /subscribe)")
def test_signup_form_never_fails_and_a_refusal_writes_nothing(
    unlimited_client: FlaskClient, system: System, form: dict[str, str], raw: bytes | None
) -> None:
    def post() -> TestResponse:
        if raw is not None:
            return unlimited_client.post(
                "/subscribe", data=raw, content_type="application/x-www-form-urlencoded"
            )
        return unlimited_client.post("/subscribe", data=form)

    assert_clean(system, post, accepted=frozenset({303}))


@BOUNDED
@given(
    body=st.one_of(
        st.fixed_dictionaries(
            {}, optional={name: st.one_of(field_texts, json_values) for name in FIELDS}
        ).map(json.dumps),
        json_values.map(json.dumps),
        nested_json,
        st.binary(max_size=300),
    )
)
@counted("signup API (POST /api/v1/subscribers)")
def test_signup_api_never_fails_and_a_refusal_writes_nothing(
    unlimited_client: FlaskClient, system: System, body: str | bytes
) -> None:
    def post() -> TestResponse:
        return unlimited_client.post(
            "/api/v1/subscribers", data=body, content_type="application/json"
        )

    assert_clean(system, post, accepted=frozenset({202}))


def link_token(system: System, purpose: str, forged: str, signed: list[int] | None) -> str:
    """A forged token, or a genuine signature over ids nobody has (as after an erasure),
    quoted for a URL path."""
    if signed is not None:
        return Tokens(system.settings.secret_key, system.clock).make(purpose, signed)
    return quote(forged, safe="")


@BOUNDED
@given(
    token=tokens,
    signed=st.none() | id_lists,
    one_click=st.booleans(),
    form=st.dictionaries(texts, texts, max_size=3),
)
@counted("confirm and unsubscribe links")
def test_forged_confirm_and_unsubscribe_links_change_nothing(
    unlimited_client: FlaskClient,
    system: System,
    token: str,
    signed: list[int] | None,
    one_click: bool,
    form: dict[str, str],
) -> None:
    confirm = link_token(system, CONFIRM, token, signed)
    unsubscribe = link_token(system, UNSUBSCRIBE, token, signed)
    if one_click:
        form = {**form, "List-Unsubscribe": "One-Click"}
    assert_clean(
        system,
        lambda: unlimited_client.get(f"/confirm/{confirm}"),
        lambda: unlimited_client.post(f"/confirm/{confirm}", data=form),
        lambda: unlimited_client.get(f"/unsubscribe/{unsubscribe}"),
        lambda: unlimited_client.post(f"/unsubscribe/{unsubscribe}", data=form),
    )


@BOUNDED
@given(token=tokens, signed=st.none() | id_lists, email=field_texts)
@counted("privacy request, download and erase")
def test_privacy_requests_and_forged_links_change_nothing(
    unlimited_client: FlaskClient,
    system: System,
    token: str,
    signed: list[int] | None,
    email: str,
) -> None:
    path = link_token(system, PRIVACY, token, signed)
    assert_clean(  # nobody is on file, so not even a privacy email may be queued
        system,
        lambda: unlimited_client.post("/privacy", data={"email": email}),
        lambda: unlimited_client.get(f"/privacy/{path}"),
        lambda: unlimited_client.get(f"/privacy/{path}/export.json"),
        lambda: unlimited_client.post(f"/privacy/{path}/erase"),
    )


JINJA_BITS = st.sampled_from(
    [
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "{{ first_name }}",
        "{{ lesson_number * 10**100 }}",
        "{{ 'a' * 10**9 }}",
        "{{ ''.__class__.__mro__ }}",
        "{% for i in range(10**9) %}x{% endfor %}",
        "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
        "{{ nope }}",
        "{{ first_name|attr('upper')() }}",
        "\r\nBcc: x@example.com",
        "Re: ",
    ]
)
template_texts = st.lists(st.one_of(texts, JINJA_BITS), max_size=6).map("".join)


@pytest.fixture
def renderer(system: System) -> Renderer:
    return make_renderer(system.settings)


@settings(BOUNDED, max_examples=120)
@given(parts=st.tuples(template_texts, template_texts, template_texts, template_texts))
@counted("lesson template check (check_lesson)")
def test_the_lesson_check_refuses_cleanly_or_accepts(
    renderer: Renderer, parts: tuple[str, str, str, str]
) -> None:
    try:
        check_lesson(renderer, EmailTemplate(*parts))
    except InvalidInput as exc:
        assert str(exc)
