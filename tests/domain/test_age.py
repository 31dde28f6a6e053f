"""Age on a date (domain/age.py): completed years, leap days, the minimum age."""

from __future__ import annotations

from datetime import date

from domain import age


def test_age_counts_completed_years():
    assert age.age_on(date(2000, 6, 15), date(2021, 6, 14)) == 20
    assert age.age_on(date(2000, 6, 15), date(2021, 6, 15)) == 21
    assert age.age_on(date(2000, 2, 29), date(2021, 2, 28)) == 20
    assert age.age_on(date(2000, 2, 29), date(2021, 3, 1)) == 21
    assert age.old_enough(date(2000, 6, 15), date(2021, 6, 15), 21)
    assert not age.old_enough(date(2000, 6, 15), date(2021, 6, 14), 21)
