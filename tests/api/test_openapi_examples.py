"""api/openapi_examples.py: every operation of the OpenAPI document has examples (a request
body's, each success answer's, each problem status's), and every example validates against its
own schema; problem examples carry real codes under the status the API answers them with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from api.openapi_examples import REFUSALS_BY_TAG, problem_codes, status_of
from api.problems import PROBLEM_JSON, STATUS_BY_CODE, TYPE_PREFIX


@pytest.fixture(scope="module")
def document(api_settings) -> dict[str, Any]:
    from api.app import create_app
    return create_app(api_settings).openapi()


def operations(document: dict[str, Any]):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", method, path, operation


def errors_of(document: dict[str, Any], schema: dict[str, Any], value: Any) -> list[str]:
    # The media type's schema with the document's components beside it, so its $refs resolve.
    root = {**schema, "components": document["components"]}
    validator = jsonschema_rs.Draft202012Validator(root, validate_formats=True)
    return [f"{error.instance_path}: {error.message}" for error in validator.iter_errors(value)]


def test_every_operation_has_a_valid_example_of_its_request_body(document):
    bodies = 0
    for name, _, _, operation in operations(document):
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            bodies += 1
            assert "example" in media, f"{name} {media_type}: no request example"
            assert not errors_of(document, media["schema"], media["example"]), (
                name, media["example"], errors_of(document, media["schema"], media["example"]))
    assert bodies >= 35


def test_every_success_answer_has_a_valid_example(document):
    for name, _, _, operation in operations(document):
        successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert successes, name
        for status, response in successes.items():
            assert response.get("content"), f"{name} {status}: no content described"
            for media_type, media in response["content"].items():
                assert "example" in media, f"{name} {status} {media_type}: no example"
                if "schema" not in media:       # the CSV statement: text
                    assert media_type == "text/csv" and media["example"].count("\n") >= 2
                    continue
                found = errors_of(document, media["schema"], media["example"])
                assert not found, (name, status, media["example"], found)


def test_every_problem_status_has_examples_with_real_codes_that_validate(document):
    checked = 0
    for name, _, path, operation in operations(document):
        if not path.startswith("/v1/"):      # the probes (/healthz, /readyz) are not the API
            continue
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            content = response.get("content", {})
            assert PROBLEM_JSON in content, f"{name} {status}: not problem+json"
            media = content[PROBLEM_JSON]
            examples = media.get("examples")
            assert examples, f"{name} {status}: no problem example"
            for code, example in examples.items():
                value = example["value"]
                assert not errors_of(document, media["schema"], value), (name, status, value)
                assert value["status"] == int(status) and value["code"] == code
                assert value["type"] == TYPE_PREFIX + code and value["title"]
                assert status_of(code) == int(status), (name, code)
                if code in STATUS_BY_CODE:
                    assert STATUS_BY_CODE[code] == int(status), (name, code)
                checked += 1
    assert checked > 500


def test_problem_examples_follow_the_routes_area_and_path(document):
    def codes(method: str, path: str, status: str) -> set[str]:
        media = document["paths"][path][method]["responses"][status]["content"][PROBLEM_JSON]
        return set(media["examples"])

    assert {"bet_id_conflict", "market_settled", "idempotency_key_in_use"} <= codes(
        "post", "/v1/bets", "409")
    assert "insufficient_funds" in codes("post", "/v1/bets", "402")      # documented for it
    assert {"api_key_missing", "api_key_invalid"} == codes("get", "/v1/bets", "401")
    assert {"bet_not_found", "not_found"} <= codes("get", "/v1/bets/{bet_id}", "404")
    assert "invalid_cursor" in codes("get", "/v1/bets", "400")
    assert "invalid_cursor" not in codes("get", "/v1/bets/{bet_id}", "400")
    assert "api_version_unknown" in codes("get", "/v1/players", "400")
    assert "idempotency_key_reused" in codes("post", "/v1/players", "422")
    assert "idempotency_key_reused" not in codes("get", "/v1/players", "422")
    assert "idempotency_key_required" in codes("post", "/v1/deposits", "400")
    assert "idempotency_key_required" not in codes("post", "/v1/players", "400")
    # A status no code of the operation answers is not described: a read never conflicts.
    assert "409" not in document["paths"]["/v1/players"]["get"]["responses"]
    assert "409" in document["paths"]["/v1/players"]["post"]["responses"]
    assert "second_factor_locked" in codes("post", "/v1/withdrawals", "429")
    assert {"api_key_not_found"} <= codes("delete", "/v1/api_keys/{key_id}", "404")
    # Reads answer no business refusals of their area ...
    assert "bet_id_conflict" not in problem_codes("GET", "/v1/bets", ["bets"], 409)
    # ... but a bet id that several partners use is ambiguous to an operator on every method.
    for method in ("get", "post"):
        for path in ("/v1/bets/{bet_id}", "/v1/bets/{bet_id}/cash_out"):
            if method in document["paths"][path]:
                assert "bet_id_ambiguous" in codes(method, path, "409"), (method, path)


def test_the_document_is_made_once_and_its_examples_added_once(api_settings):
    from api.app import create_app
    app = create_app(api_settings)
    first = app.openapi()
    assert app.openapi() is first
    assert first["paths"]["/v1/players"]["post"]["requestBody"]["content"][
        "application/json"]["example"]["first_name"] == "Ada"


def test_every_listed_refusal_is_a_code_the_code_base_really_answers():
    root = Path(__file__).resolve().parents[2]
    sources = "\n".join(path.read_text() for folder in ("api", "commands", "compliance",
                                                        "domain", "workflows")
                        for path in (root / folder).rglob("*.py")
                        if path.name != "openapi_examples.py")
    listed = {code for codes in REFUSALS_BY_TAG.values() for code in codes}
    missing = sorted(code for code in listed if f'"{code}"' not in sources)
    assert not missing, missing
