"""A player's statement through the API (api/routes/statements.py): transactions with running
balances in cursor pages, the CSV export of a period, balances at a past moment; every one
tenant-scoped."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta

from sqlalchemy import Engine

from store import players
from tests.support.api import Key, assert_problem, make_key
from tests.support.statements import HISTORY_BALANCES, HISTORY_LINES, money_history

NAMES = {"player_cash": "cash", "bets_in_play": "bets_in_play",
         "player_pending_withdrawal": "pending_withdrawal", "player_debt": "debt"}


def player_with_history(engine: Engine) -> tuple[Key, str, list]:
    key = make_key(engine, "partner", f"partner-{uuid.uuid4().hex[:10]}", name="statements")
    player_id = f"ply_stm_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        players.insert(conn, player_id=player_id, partner_id=key.partner_id, external_ref=None,
                       first_name="Ada", last_name="Lovelace", email=None, date_of_birth=None,
                       jurisdiction="US-NJ")
    return key, player_id, money_history(engine, player_id)


def as_shown(kind, account, amount, balance, held_change, held) -> tuple:
    """A HISTORY_LINES row as the API shows it: debt as owed, held/available on cash only."""
    name = NAMES[str(account)]
    sign = -1 if name == "debt" else 1
    cash = name == "cash"
    return (kind, name, sign * amount, sign * balance, held_change, held if cash else None,
            balance - held if cash else None)


def shown(item: dict) -> tuple:
    return (item["kind"], item["account"], item["amount"], item["balance"], item["held_change"],
            item["held"], item["available"])


async def test_transactions_show_every_movement_newest_first_with_running_balances(client,
                                                                                   engine):
    key, player_id, _ = player_with_history(engine)
    response = await client.get(f"/v1/players/{player_id}/transactions",
                                params={"limit": 100}, headers=key.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["has_more"] is False
    assert body["url"] == f"/v1/players/{player_id}/transactions"
    assert [shown(item) for item in body["data"]] == [as_shown(*row)
                                                       for row in HISTORY_LINES][::-1]
    item = body["data"][0]
    assert item["object"] == "player_transaction" and item["player_id"] == player_id
    assert item["id"] == f"ptx_{item['ledger_transaction_id']}_{item['id'].rsplit('_', 1)[1]}"
    by_kind = {entry["kind"]: entry for entry in body["data"]}
    assert by_kind["resettlement"]["corrects_ledger_transaction_id"] == (
        by_kind["settlement"]["ledger_transaction_id"])
    assert by_kind["resettlement"]["reference"] == "b1"
    assert by_kind["hold_void"]["reference"] == "wd_1"
    assert by_kind["hold_void"]["hold_ledger_transaction_id"] is not None
    assert by_kind["deposit"]["ledger_key"] == f"{player_id}:dep1"
    assert by_kind["hold"]["currency"] == "USD"


async def test_transaction_pages_go_both_ways_and_filter_by_currency_and_time(client, engine):
    key, player_id, moments = player_with_history(engine)
    url = f"/v1/players/{player_id}/transactions"
    everything = (await client.get(url, params={"limit": 100}, headers=key.headers)).json()
    ids = [item["id"] for item in everything["data"]]

    seen, after = [], None
    while True:
        params = {"limit": 5} | ({"starting_after": after} if after else {})
        page = (await client.get(url, params=params, headers=key.headers)).json()
        seen += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert seen == ids
    back = (await client.get(url, params={"limit": 4, "ending_before": ids[10]},
                             headers=key.headers)).json()
    assert [item["id"] for item in back["data"]] == ids[6:10] and back["has_more"] is True

    assert (await client.get(url, params={"currency": "EUR"},
                             headers=key.headers)).json()["data"] == []
    # Steps 2 and 3 (stake, settlement): two lines each.
    window = {"created[gt]": moments[0].isoformat(), "created[lte]": moments[2].isoformat()}
    page = (await client.get(url, params=window, headers=key.headers)).json()
    assert [item["kind"] for item in page["data"]] == ["settlement"] * 2 + ["bet_stake"] * 2


async def test_statements_are_tenant_scoped_and_bad_cursors_are_problems(client, engine):
    key, player_id, _ = player_with_history(engine)
    other_key, other_id, _ = player_with_history(engine)
    url = f"/v1/players/{player_id}/transactions"
    for path in (url, f"{url}.csv?created[gte]=2026-01-01&created[lt]=2099-01-01",
                 f"/v1/players/{player_id}/balances"):
        assert_problem(await client.get(path, headers=other_key.headers), 404,
                       "player_not_found")
    theirs = (await client.get(f"/v1/players/{other_id}/transactions",
                               headers=other_key.headers)).json()["data"][0]["id"]
    for cursor in (theirs, "ptx_1_x", "nonsense", "ptx_999999999999_1"):
        response = await client.get(url, params={"starting_after": cursor}, headers=key.headers)
        assert_problem(response, 400, "invalid_cursor")
    assert_problem(await client.get(url, params={"currency": "usd"}, headers=key.headers), 422,
                   "validation_error")


async def test_an_operator_reads_any_players_statement(client, engine, keys):
    _, player_id, _ = player_with_history(engine)
    response = await client.get(f"/v1/players/{player_id}/transactions",
                                params={"limit": 100}, headers=keys.operator.headers)
    assert len(response.json()["data"]) == len(HISTORY_LINES)


async def test_csv_export_lists_a_period_oldest_first_with_running_balances(client, engine):
    key, player_id, moments = player_with_history(engine)
    period = {"created[gte]": moments[0].isoformat(), "created[lt]": moments[8].isoformat()}
    response = await client.get(f"/v1/players/{player_id}/transactions.csv", params=period,
                                headers=key.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith(
        f'attachment; filename="{player_id}_')
    rows = list(csv.DictReader(io.StringIO(response.text)))
    # Steps 2 to 9 (stake ... resettlement): every line after the first deposit up to it.
    expected = [as_shown(*row) for row in HISTORY_LINES[1:13]]
    assert [(r["kind"], r["account"], int(r["amount"]), int(r["balance"]), int(r["held_change"]),
             int(r["held"]) if r["held"] else None,
             int(r["available"]) if r["available"] else None) for r in rows] == expected
    resettled = next(r for r in rows if r["kind"] == "resettlement")
    settled = next(r for r in rows if r["kind"] == "settlement")
    assert resettled["corrects_ledger_transaction_id"] == settled["ledger_transaction_id"]
    listed = (await client.get(f"/v1/players/{player_id}/transactions", params=period | {
        "limit": 100}, headers=key.headers)).json()["data"]
    assert [r["id"] for r in rows] == [item["id"] for item in listed][::-1]


async def test_csv_export_needs_a_period_that_ends_after_it_starts(client, engine):
    key, player_id, moments = player_with_history(engine)
    url = f"/v1/players/{player_id}/transactions.csv"
    response = await client.get(url, params={"created[gte]": moments[0].isoformat()},
                                headers=key.headers)
    assert_problem(response, 422, "validation_error")
    response = await client.get(url, params={"created[gte]": moments[2].isoformat(),
                                             "created[lt]": moments[1].isoformat()},
                                headers=key.headers)
    assert_problem(response, 422, "validation_error")
    empty = await client.get(url, params={"created[gte]": "2001-01-01T00:00:00Z",
                                          "created[lt]": "2001-02-01T00:00:00Z"},
                             headers=key.headers)
    assert empty.status_code == 200 and empty.text.count("\n") == 1   # the header row only


async def test_balances_at_a_past_moment_are_reconstructed_from_the_ledger(client, engine):
    key, player_id, moments = player_with_history(engine)
    url = f"/v1/players/{player_id}/balances"
    for moment, (cash, held, bip, pending, debt) in zip(moments, HISTORY_BALANCES, strict=True):
        response = await client.get(url, params={"at": moment.isoformat()}, headers=key.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "player_balances" and body["player_id"] == player_id
        [usd] = body["balances"]
        assert usd == {"currency": "USD", "cash": cash, "held": held, "available": cash - held,
                       "pending_withdrawal": pending, "bets_in_play": bip, "debt": -debt}
    before = await client.get(url, params={"at": (moments[0] - timedelta(days=1)).isoformat()},
                              headers=key.headers)
    assert before.json()["balances"] == []
    now = (await client.get(url, headers=key.headers)).json()
    player = (await client.get(f"/v1/players/{player_id}", headers=key.headers)).json()
    assert now["balances"] == player["balances"]
    future = await client.get(url, params={"at": "2999-01-01T00:00:00Z"}, headers=key.headers)
    assert_problem(future, 422, "validation_error")
