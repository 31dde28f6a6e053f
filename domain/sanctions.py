"""Sanctions screening by fuzzy name match: pure functions over a screening list.

A player's full name is normalised (case, accents, punctuation, word order) and compared with
every listed name using rapidfuzz's token-sort ratio (0-100). A score above the configured
threshold is a *possible* hit: the KYC workflow sends the case to an operator, who decides;
this module never decides that a player is sanctioned.

The list is CSV (`name,list,reference`). A small fictional list ships with the package for
development (`sanctions_list.csv`); production points `Settings.sanctions_list_path` at the
real, licensed list. Must never: read files, the database or the network (callers pass the text).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources

from rapidfuzz import fuzz, process

DEVELOPMENT_LIST = "sanctions_list.csv"


@dataclass(frozen=True)
class ListedName:
    name: str
    list: str          # which list it comes from (e.g. OFAC-SDN, UN, or DEV for the fictional one)
    reference: str     # the entry's id on that list


@dataclass(frozen=True)
class ScreeningResult:
    score: float                   # best match, 0-100
    match: ListedName | None       # the best-matching entry (None for an empty list)
    hit: bool                      # score above the threshold: an operator must review


def normalise(name: str) -> str:
    """Lower case, accents removed, punctuation to spaces, single spaces."""
    decomposed = unicodedata.normalize("NFKD", name)
    ascii_only = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    words = re.sub(r"[^\w]+", " ", ascii_only.casefold()).split()
    return " ".join(words)


def parse_list(text: str) -> list[ListedName]:
    """Entries of a screening list in CSV (header `name,list,reference`; blank lines ignored)."""
    rows = csv.DictReader(io.StringIO(text))
    return [ListedName(row["name"].strip(), (row.get("list") or "").strip(),
                       (row.get("reference") or "").strip())
            for row in rows if row.get("name") and row["name"].strip()]


def development_list_text() -> str:
    """The fictional list shipped for development and tests (package data, not a file path)."""
    return resources.files("domain").joinpath(DEVELOPMENT_LIST).read_text(encoding="utf-8")


def screen(full_name: str, entries: list[ListedName], threshold: float) -> ScreeningResult:
    """Best fuzzy match of `full_name` on the list; a hit when its score is above `threshold`."""
    if not entries or not normalise(full_name):
        return ScreeningResult(0.0, None, False)
    choices = [normalise(entry.name) for entry in entries]
    # token_sort_ratio: "Doe John" matches "John Doe"; small spelling variations still score high.
    _, score, index = process.extractOne(normalise(full_name), choices,
                                         scorer=fuzz.token_sort_ratio)
    score = round(float(score), 2)
    return ScreeningResult(score, entries[index], score > threshold)
