"""api/schemas/text.py: a stripped text field's schema refuses exactly what the API refuses.

The contract fuzz once sent `"external_ref": "\\n"`: one character to JSON Schema, nothing to the
API once stripped (422). Every stripped text field with a minimum length now carries
`not_blank(n)` (or an anchored pattern of its own, which refuses blanks by itself), and here
each one is put to white space of both regex dialects (the API's
Unicode White_Space, ECMA-262's \\s with U+FEFF, the C0 separators U+001C-U+001F that neither
strips), alone and around kept text, through the API's own validator and a JSON Schema
validator (jsonschema_rs, ECMA-262 regexes) reading the field's published schema.

Identifiers and codes with a pattern of their own are `Exact` (never stripped): a valid value of
each, padded with every such character, is refused by both alike, and taken by both unpadded.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import annotated_types
import jsonschema_rs
import pytest
from pydantic import BaseModel, ConfigDict, create_model

import api.schemas
from api.schemas.text import ExactFields, exact_names, is_exact, not_blank

# The API's white space, the characters ECMA-262 adds or that look alike, and one kept letter.
SPACES = ["\t", "\n", "\x0b", "\x0c", "\r", " ", "\x85", "\xa0", "\u1680", "\u2000", "\u200a",
          "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
NOT_STRIPPED = ["\ufeff", "\x1c", "\x1f", "\u200b"]


def stripped_text_fields() -> list[tuple[str, str, Any]]:
    found = []
    for info in pkgutil.iter_modules(api.schemas.__path__):
        module = importlib.import_module(f"api.schemas.{info.name}")
        for name, model in vars(module).items():
            if not (isinstance(model, type) and issubclass(model, BaseModel)
                    and model.__module__ == module.__name__
                    and model.model_config.get("str_strip_whitespace")):
                continue
            for field_name, field in model.model_fields.items():
                if field.annotation in (str, str | None) and any(
                        isinstance(c, annotated_types.MinLen) for c in field.metadata):
                    found.append((f"{name}.{field_name}", module.__name__, field))
    return found


def exact_fields() -> list[tuple[str, Any]]:
    """The text fields of stripping request models that are taken exactly as sent."""
    found = []
    for info in pkgutil.iter_modules(api.schemas.__path__):
        module = importlib.import_module(f"api.schemas.{info.name}")
        for name, model in vars(module).items():
            if (isinstance(model, type) and issubclass(model, BaseModel)
                    and model.__module__ == module.__name__
                    and model.model_config.get("str_strip_whitespace")):
                found += [(f"{name}.{field_name}", field)
                          for field_name, field in model.model_fields.items() if is_exact(field)]
                if exact_names(model):
                    # Older API versions have them stripped (ExactFields' before step).
                    assert issubclass(model, ExactFields), f"{name}: Exact fields: ExactFields"
    return found


FIELDS = stripped_text_fields()
EXACT = exact_fields()
# A valid value of each exact field, by field name.
VALID = {"partner_id": "partner_acme-1.eu", "currency": "USD", "payment_method": "pm_card_visa",
         "return_url": "https://partner.example/return?d=1", "number": "X1234-567",
         "country": "GB", "email": "ada@example.com", "jurisdiction": "US-NJ",
         "code": "123456", "payout_destination": "ba_1Nx2", "destination": "ba_1Nx2"}


def samples(min_length: int) -> list[str]:
    kept = "a" * min_length
    short = "a" * (min_length - 1)
    out = []
    for space in SPACES + NOT_STRIPPED:
        out += [space, space * 3, f"{space}{kept}{space}", f"{space}{short}{space}",
                f"{kept[:1]}{space * 2}{kept[1:]}", f"{space}{kept}", f"{short}{space}"]
    return out


def test_the_fields_are_found_and_each_carries_the_pattern() -> None:
    names = {name for name, _, _ in FIELDS}
    assert {"PlayerCreate.external_ref", "PlayerCreate.first_name", "DepositCreate.player_id",
            "BreakResolve.reason"} <= names
    for name, _, field in FIELDS:
        min_length = next(c.min_length for c in field.metadata
                          if isinstance(c, annotated_types.MinLen))
        patterns = [c.pattern for c in field.metadata if getattr(c, "pattern", None)]
        assert patterns, f"{name}: a stripped text field with a minimum length needs a pattern"
        if patterns != [not_blank(min_length)]:
            # A pattern of its own, anchored: it refuses blank values by itself.
            assert patterns[0].startswith("^") and patterns[0].endswith("$"), name


@pytest.mark.parametrize(("name", "module", "field"), FIELDS, ids=[f[0] for f in FIELDS])
def test_the_schema_and_the_api_agree_on_white_space(name: str, module: str, field: Any) -> None:
    probe = create_model("Probe", __config__=ConfigDict(str_strip_whitespace=True),
                         value=(field.annotation, field))
    schema = probe.model_json_schema()["properties"]["value"]
    validator = jsonschema_rs.validator_for(schema)
    min_length = next(c.min_length for c in field.metadata
                      if isinstance(c, annotated_types.MinLen))
    patterns = [c.pattern for c in field.metadata if getattr(c, "pattern", None)]
    own_pattern = patterns != [not_blank(min_length)]
    disagree = []
    for sample in samples(min_length):
        try:
            probe(value=sample)
            api_accepts = True
        except ValueError:
            api_accepts = False
        schema_accepts = validator.is_valid(sample)
        if api_accepts != schema_accepts:
            disagree.append((sample, api_accepts))
    assert disagree == [], f"{name}: (value, the API accepts it) where the schema says otherwise"
    if own_pattern:
        assert is_exact(field), f"{name}: a pattern of its own: Exact"


def test_the_exact_fields_are_found() -> None:
    names = {name for name, _ in EXACT}
    assert {"DepositCreate.currency", "WithdrawalCreate.currency", "PlayerCreate.email",
            "SecondFactorCodeIn.code", "ApiKeyCreate.partner_id", "DocumentIn.country"} <= names
    for name, field in EXACT:
        assert any(getattr(c, "pattern", None) for c in field.metadata), name
        assert name.rsplit(".", 1)[1] in VALID, f"{name}: add a valid value to VALID"


@pytest.mark.parametrize(("name", "field"), EXACT, ids=[f[0] for f in EXACT])
def test_an_exact_field_is_refused_padded_by_the_schema_and_the_api_alike(
        name: str, field: Any) -> None:
    probe = create_model("Probe", __config__=ConfigDict(str_strip_whitespace=True),
                         value=(field.annotation, field))
    validator = jsonschema_rs.validator_for(probe.model_json_schema()["properties"]["value"])
    valid = VALID[name.rsplit(".", 1)[1]]
    assert probe(value=valid).value == valid and validator.is_valid(valid), name
    disagree = []
    for space in SPACES + NOT_STRIPPED:
        for sample in (f"{space}{valid}", f"{valid}{space}", f"{space}{valid}{space}"):
            try:
                probe(value=sample)
                api_accepts = True
            except ValueError:
                api_accepts = False
            # Both alike; white space of either dialect, both refuse.
            if api_accepts != validator.is_valid(sample) or (
                    api_accepts and space in SPACES + ["\ufeff"]):
                disagree.append((sample, api_accepts))
    assert disagree == [], f"{name}: (padded value, the API takes it) not refused by both"


@pytest.mark.parametrize("min_length", [1, 2, 3, 5])
def test_not_blank_is_met_exactly_by_values_that_keep_enough_once_stripped(
        min_length: int) -> None:
    import re

    pattern = re.compile(not_blank(min_length))
    for sample in samples(min_length):
        kept = sample.strip("".join(SPACES))
        assert bool(pattern.search(sample)) == (len(kept) >= min_length), repr(sample)
