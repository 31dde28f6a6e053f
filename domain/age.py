"""Age on a given day, for the KYC age check. Pure: no clock, no configuration.

The minimum age per jurisdiction is configuration (Settings.kyc_min_age_by_jurisdiction); the
KYC activity passes it in with today's date. Must never read the clock itself.
"""

from __future__ import annotations

from datetime import date


def age_on(date_of_birth: date, today: date) -> int:
    """Completed years on `today` (a 29 February birthday counts on 1 March in other years)."""
    years = today.year - date_of_birth.year
    if (today.month, today.day) < (date_of_birth.month, date_of_birth.day):
        years -= 1
    return years


def old_enough(date_of_birth: date, today: date, minimum_age: int) -> bool:
    return age_on(date_of_birth, today) >= minimum_age
