"""domain/frozen.py quick_init: a frozen dataclass made by the quick __init__ is the same value
as the one the dataclass's own __init__ makes, and stays frozen."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field

import pytest

from domain.frozen import quick_init
from domain.settlement.plan import BetStatus, BetUpdate, StoredBet


@dataclass(frozen=True)
class Reference:
    name: str
    amount: int
    note: str | None = None
    count: int = 0


@quick_init
@dataclass(frozen=True)
class Quick:
    name: str
    amount: int
    note: str | None = None
    count: int = 0


def test_quick_values_hold_what_the_dataclass_init_would_give_them() -> None:
    for args, kwargs in [(("a", 1), {}), (("a", 1, "n"), {}), (("a",), {"amount": 2, "count": 3}),
                         ((), {"name": "b", "amount": -4, "note": None})]:
        quick, reference = Quick(*args, **kwargs), Reference(*args, **kwargs)
        assert dataclasses.astuple(quick) == dataclasses.astuple(reference)
        assert repr(quick) == repr(reference).replace("Reference", "Quick")


@quick_init
@dataclass(frozen=True)
class WithFactory:
    name: str
    tags: list[str] = field(default_factory=list)


def test_a_default_factory_makes_a_new_default_per_value() -> None:
    a, b = WithFactory("a"), WithFactory("b")
    assert a.tags == [] and b.tags == [] and a.tags is not b.tags
    given = ["x"]
    assert WithFactory("c", given).tags is given


def test_quick_values_keep_equality_hashing_replace_and_pickling() -> None:
    a, b = Quick("a", 1, count=2), Quick("a", 1, None, 2)
    assert a == b and hash(a) == hash(b) and a != Quick("a", 1, count=3)
    assert {a: 1}[b] == 1
    assert dataclasses.replace(a, amount=5) == Quick("a", 5, count=2)
    assert pickle.loads(pickle.dumps(a)) == a


def test_quick_values_stay_frozen() -> None:
    value = Quick("a", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.amount = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del value.name  # type: ignore[misc]
    assert value.amount == 1


def test_quick_init_keeps_the_signature_and_its_errors() -> None:
    with pytest.raises(TypeError):
        Quick("a")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick("a", 1, unknown=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick("a", 1, None, 0, 9)  # type: ignore[call-arg]


def test_settlement_values_use_the_quick_init_and_give_the_same_fields() -> None:
    update = BetUpdate("bet_1", BetStatus.SETTLED, 250, 250, 1, "bet:bet_1:v1", paid_bonus=5)
    assert dataclasses.asdict(update) == {
        "bet_id": "bet_1", "status": BetStatus.SETTLED, "paid": 250, "payout": 250,
        "version": 1, "settlement_key": "bet:bet_1:v1", "rollbacks": 0, "needs_review": None,
        "paid_bonus": 5, "returned_free_bet": 0, "cancellation_id": None}
    assert BetUpdate.__init__.__qualname__ == "BetUpdate.__init__"
    names = [f.name for f in dataclasses.fields(StoredBet)]
    bet = StoredBet(*range(len(names)))  # type: ignore[arg-type]
    assert [getattr(bet, name) for name in names] == list(range(len(names)))


def test_quick_init_refuses_what_it_does_not_handle() -> None:
    @dataclass
    class NotFrozen:
        a: int

    @dataclass(frozen=True)
    class WithPostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True, slots=True)
    class WithSlots:
        a: int

    @dataclass(frozen=True, kw_only=True)
    class KeywordOnly:
        a: int

    for cls in (NotFrozen, WithPostInit, WithSlots, KeywordOnly):
        with pytest.raises(TypeError):
            quick_init(cls)
