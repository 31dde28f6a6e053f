"""Sanctions screening (domain/sanctions.py): fuzzy name matching against a list."""

from __future__ import annotations

from domain import sanctions

LIST = sanctions.parse_list(sanctions.development_list_text())


def test_the_development_list_ships_with_the_package():
    assert len(LIST) >= 5 and all(entry.list == "DEV" for entry in LIST)


def test_exact_reordered_accented_and_misspelt_names_are_hits():
    for name in ("Viktor Aleksandrovich Blackwood", "Blackwood, Viktor Aleksandrovich",
                 "VÍKTOR ALEKSANDROVICH BLACKWOOD", "Viktor Aleksandrovich Blackwod"):
        result = sanctions.screen(name, LIST, threshold=88)
        assert result.hit and result.match.reference == "DEV-0001", (name, result)


def test_unrelated_names_are_not_hits():
    for name in ("Grace Hopper", "Ada Lovelace", "Viktor Smith"):
        result = sanctions.screen(name, LIST, threshold=88)
        assert not result.hit and result.score <= 88, (name, result)


def test_threshold_is_strictly_above_and_empty_inputs_never_hit():
    exact = sanctions.screen("Renata Ilyushkina", LIST, threshold=100)
    assert exact.score == 100 and not exact.hit
    nothing = sanctions.ScreeningResult(0.0, None, False)
    assert sanctions.screen("Renata Ilyushkina", [], threshold=50) == nothing
    assert not sanctions.screen("  ,. ", LIST, threshold=0).hit
