"""Free-bet grants, bonuses and deposit-match offers as SQL: reads and writes of
free_bet_grants, bonuses and deposit_match_offers. Nothing else.

    free_bet_grant, insert_free_bet_grant                     free bets granted
    bonus, active_bonus, lock_bonuses, insert_bonus, add_wagered, close_bonus   bonuses
    deposit_match_offer, upsert_deposit_match_offer           a partner's deposit match

The rules (stake order, wagering, conversion, forfeiture) live in commands/promotions.py.
Must never: write audit or outbox records, post to the ledger, or decide a business rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

_BONUS = """id, player_id, partner_id, currency, amount, source, source_ref,
            wagering_requirement, wagered, min_odds_num, min_odds_den, status, expires_at,
            converted_amount, forfeited_amount, forfeit_reason, request_hash, created_by,
            created_at, closed_at"""


# --- free bets ------------------------------------------------------------------------------

def free_bet_grant(conn: Connection, grant_id: str) -> dict[str, Any] | None:
    row = conn.execute(text("""SELECT id, player_id, partner_id, currency, amount, reason,
                                      request_hash, granted_by, created_at
                                 FROM free_bet_grants WHERE id = :id"""),
                       {"id": grant_id}).mappings().one_or_none()
    return dict(row) if row is not None else None


def insert_free_bet_grant(conn: Connection, *, grant_id: str, player_id: str, partner_id: str,
                          currency: str, amount: int, reason: str, request_hash: bytes,
                          granted_by: str) -> None:
    conn.execute(text("""
        INSERT INTO free_bet_grants (id, player_id, partner_id, currency, amount, reason,
                                     request_hash, granted_by)
        VALUES (:id, :player, :partner, :currency, :amount, :reason, :hash, :by)"""),
        {"id": grant_id, "player": player_id, "partner": partner_id, "currency": currency,
         "amount": amount, "reason": reason, "hash": request_hash, "by": granted_by})


# --- bonuses --------------------------------------------------------------------------------

def bonus(conn: Connection, bonus_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
    lock = " FOR UPDATE" if for_update else ""
    row = conn.execute(text(f"SELECT {_BONUS} FROM bonuses WHERE id = :id{lock}"),
                       {"id": bonus_id}).mappings().one_or_none()
    return dict(row) if row is not None else None


def active_bonus(conn: Connection, player_id: str, currency: str, *,
                 for_update: bool = False) -> dict[str, Any] | None:
    """The player's active bonus in this currency (at most one), or None."""
    lock = " FOR UPDATE" if for_update else ""
    row = conn.execute(text(f"""SELECT {_BONUS} FROM bonuses
                                 WHERE player_id = :p AND currency = :c
                                   AND status = 'active'{lock}"""),
                       {"p": player_id, "c": currency}).mappings().one_or_none()
    return dict(row) if row is not None else None


def lock_bonuses(conn: Connection, bonus_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """These bonuses, locked (FOR UPDATE) in id order: id -> row."""
    ids = sorted(set(bonus_ids))
    if not ids:
        return {}
    rows = conn.execute(text(f"""SELECT {_BONUS} FROM bonuses WHERE id = ANY(:ids)
                                  ORDER BY id FOR UPDATE"""), {"ids": ids}).mappings().all()
    return {row["id"]: dict(row) for row in rows}


def had_deposit_match(conn: Connection, player_id: str) -> bool:
    return bool(conn.execute(text("""SELECT 1 FROM bonuses
                                      WHERE player_id = :p AND source = 'deposit_match'"""),
                             {"p": player_id}).first())


def insert_bonus(conn: Connection, *, bonus_id: str, player_id: str, partner_id: str,
                 currency: str, amount: int, source: str, source_ref: str | None,
                 wagering_requirement: int, min_odds: tuple[int, int], expires_at: datetime,
                 request_hash: bytes, created_by: str) -> None:
    conn.execute(text("""
        INSERT INTO bonuses (id, player_id, partner_id, currency, amount, source, source_ref,
                             wagering_requirement, min_odds_num, min_odds_den, expires_at,
                             request_hash, created_by)
        VALUES (:id, :player, :partner, :currency, :amount, :source, :ref, :req, :num, :den,
                :expires, :hash, :by)"""),
        {"id": bonus_id, "player": player_id, "partner": partner_id, "currency": currency,
         "amount": amount, "source": source, "ref": source_ref, "req": wagering_requirement,
         "num": min_odds[0], "den": min_odds[1], "expires": expires_at, "hash": request_hash,
         "by": created_by})


def add_wagered(conn: Connection, bonus_id: str, amount: int) -> int:
    """Count `amount` more towards the bonus's wagering; returns the new total."""
    return conn.execute(text("""UPDATE bonuses SET wagered = wagered + :a WHERE id = :id
                                RETURNING wagered"""), {"a": amount, "id": bonus_id}).scalar_one()


def close_bonus(conn: Connection, bonus_id: str, *, status: str, converted_amount: int | None,
                forfeited_amount: int | None, forfeit_reason: str | None) -> None:
    conn.execute(text("""
        UPDATE bonuses SET status = :s, converted_amount = :conv, forfeited_amount = :forf,
                           forfeit_reason = :why, closed_at = now()
         WHERE id = :id"""),
        {"s": status, "conv": converted_amount, "forf": forfeited_amount, "why": forfeit_reason,
         "id": bonus_id})


# --- deposit-match offers -------------------------------------------------------------------

def deposit_match_offer(conn: Connection, partner_id: str) -> dict[str, Any] | None:
    row = conn.execute(text("""SELECT partner_id, percent, max_amount, wagering_multiplier,
                                      min_odds_num, min_odds_den, valid_days, active,
                                      updated_by, updated_at
                                 FROM deposit_match_offers WHERE partner_id = :p"""),
                       {"p": partner_id}).mappings().one_or_none()
    return dict(row) if row is not None else None


def upsert_deposit_match_offer(conn: Connection, *, partner_id: str, percent: int,
                               max_amount: int, wagering_multiplier: int,
                               min_odds: tuple[int, int], valid_days: int, active: bool,
                               updated_by: str) -> None:
    conn.execute(text("""
        INSERT INTO deposit_match_offers (partner_id, percent, max_amount, wagering_multiplier,
                                          min_odds_num, min_odds_den, valid_days, active,
                                          updated_by)
        VALUES (:p, :pct, :max, :mult, :num, :den, :days, :active, :by)
        ON CONFLICT (partner_id) DO UPDATE
           SET percent = excluded.percent, max_amount = excluded.max_amount,
               wagering_multiplier = excluded.wagering_multiplier,
               min_odds_num = excluded.min_odds_num, min_odds_den = excluded.min_odds_den,
               valid_days = excluded.valid_days, active = excluded.active,
               updated_by = excluded.updated_by, updated_at = now()"""),
        {"p": partner_id, "pct": percent, "max": max_amount, "mult": wagering_multiplier,
         "num": min_odds[0], "den": min_odds[1], "days": valid_days, "active": active,
         "by": updated_by})
