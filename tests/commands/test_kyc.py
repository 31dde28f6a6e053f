"""commands.kyc on the real database: each change of a case writes its row, its history row,
its audit record and (where partners care) its outbox event in the caller's transaction; a
retried or late change writes nothing; an operator's decision is on record by their name."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, text

from commands import kyc
from store import kyc as store
from tests.support.factories import audit_actions, events, make_player
from workflows.contracts.kyc import (
    DocumentSubmission,
    Event,
    KycDocument,
    KycState,
    ReasonCode,
    Step,
    Transition,
)


def audit_records(engine: Engine, player_id: str) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT record FROM audit_log WHERE record LIKE :pattern ORDER BY seq"),
            {"pattern": f'%"subject_id":"{player_id}"%'}).scalars()
        return [json.loads(row) for row in rows]


def history(engine: Engine, player_id: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(h["state"], h["step"]) for h in store.history(conn, player_id)]


def review(player_id: str) -> Transition:
    return Transition(player_id, KycState.REVIEW, Step.SANCTIONS, ReasonCode.SANCTIONS_REVIEW,
                      "possible sanctions match",
                      {"sanctions_score": 93.5, "sanctions_match": "Viktor Blackwood"},
                      event=Event.REVIEW_REQUIRED)


def test_opening_a_case_is_recorded_once(engine):
    player = make_player(engine)
    with engine.begin() as conn:
        assert kyc.open_case(conn, player.id, actor="api_key:test")
    with engine.begin() as conn:
        assert not kyc.open_case(conn, player.id, actor="api_key:test")   # a retry
    assert history(engine, player.id) == [("pending", "opened")]
    [started] = audit_records(engine, player.id)
    assert (started["actor"], started["action"]) == ("api_key:test", "kyc.started")
    assert started["before"] is None and started["after"]["state"] == "pending"


def test_an_advance_writes_row_history_audit_and_event_together(engine):
    player = make_player(engine)
    with engine.begin() as conn:
        kyc.open_case(conn, player.id, actor="api_key:test")
        assert kyc.advance(conn, review(player.id))
        case = store.get(conn, player.id)
    assert (case["state"], case["reason_code"]) == ("review", "sanctions_review")
    assert float(case["sanctions_score"]) == 93.5 and case["sanctions_match"] == "Viktor Blackwood"
    assert history(engine, player.id) == [("pending", "opened"), ("review", "sanctions")]
    record = audit_records(engine, player.id)[-1]
    assert (record["actor"], record["action"]) == (f"workflow:kyc-{player.id}", "kyc.review")
    assert (record["before"]["state"], record["after"]["state"]) == ("pending", "review")
    assert events(engine, player.id) == ["kyc.review_required"]
    with engine.connect() as conn:
        payload, partner = conn.execute(text(
            "SELECT payload, partner_id FROM outbox_events WHERE aggregate_id = :id"),
            {"id": player.id}).one()
    assert payload == {"player_id": player.id, "state": "review",
                       "reason_code": "sanctions_review", "reason": "possible sanctions match"}
    assert partner == player.partner_id


def test_a_retried_advance_writes_nothing(engine):
    player = make_player(engine)
    with engine.begin() as conn:
        kyc.open_case(conn, player.id, actor="api_key:test")
        assert kyc.advance(conn, review(player.id))
    with engine.begin() as conn:
        assert not kyc.advance(conn, review(player.id))
    assert history(engine, player.id) == [("pending", "opened"), ("review", "sanctions")]
    assert audit_actions(engine, player.id) == ["kyc.started", "kyc.review"]
    assert events(engine, player.id) == ["kyc.review_required"]


def test_a_finished_case_takes_no_further_change(engine):
    player = make_player(engine)
    with engine.begin() as conn:
        kyc.open_case(conn, player.id, actor="api_key:test")
        assert kyc.advance(conn, Transition(player.id, KycState.VERIFIED, Step.DOCUMENT,
                                            event=Event.VERIFIED))
        assert not kyc.advance(conn, Transition(player.id, KycState.REJECTED, Step.DOCUMENT,
                                                ReasonCode.DOCUMENT_REJECTED,
                                                event=Event.REJECTED))
        case = store.get(conn, player.id)
    assert case["state"] == "verified" and case["verified_at"] is not None
    assert events(engine, player.id) == ["kyc.verified"]


def test_an_operator_decision_is_on_record_by_the_operator(engine):
    player = make_player(engine)
    with engine.begin() as conn:
        kyc.open_case(conn, player.id, actor="api_key:test")
        kyc.advance(conn, review(player.id))
        assert kyc.advance(conn, Transition(
            player.id, KycState.PENDING, Step.REVIEW,
            detail={"decision": "approve", "operator": "operator:ada", "note": None},
            actor="operator:ada", action="kyc.review.approve"))
    decision = audit_records(engine, player.id)[-1]
    assert (decision["actor"], decision["action"]) == ("operator:ada", "kyc.review.approve")
    assert (decision["before"]["state"], decision["after"]["state"]) == ("review", "pending")
    assert events(engine, player.id) == ["kyc.review_required"]   # no event for an approval


def test_a_submitted_document_names_its_check_and_attempt(engine):
    player = make_player(engine)
    submission = DocumentSubmission(player.id, f"kyc-{player.id}:run-1:doc:1", 1,
                                    KycDocument("passport", "P1234567", "US"))
    with engine.begin() as conn:
        kyc.open_case(conn, player.id, actor="api_key:test")
        assert kyc.document_submitted(conn, submission, "chk_000042")
        assert not kyc.document_submitted(conn, submission, "chk_000042")   # a retry
        case = store.get(conn, player.id)
    assert (case["state"], case["provider_check_id"], case["document_attempts"]) == (
        "documents", "chk_000042", 1)
    assert audit_actions(engine, player.id) == ["kyc.started", "kyc.document_submitted"]
    assert events(engine, player.id) == []


def test_a_change_rolled_back_leaves_no_row_no_audit_and_no_event(engine):
    player = make_player(engine)
    with engine.begin() as conn:
        kyc.open_case(conn, player.id, actor="api_key:test")
    with pytest.raises(RuntimeError), engine.begin() as conn:
        kyc.advance(conn, review(player.id))
        raise RuntimeError("the caller's transaction fails after the command")
    with engine.connect() as conn:
        assert store.get(conn, player.id)["state"] == "pending"
    assert history(engine, player.id) == [("pending", "opened")]
    assert audit_actions(engine, player.id) == ["kyc.started"]
    assert events(engine, player.id) == []
