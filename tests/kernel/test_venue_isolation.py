"""Accounts at the paper venue are isolated (issue 15): over a real loopback WebSocket, one account
never sees, cancels, replaces or hears about another's orders and fills, and client order ids are
per account. Connections are given their account by the ``PaperVenue.on_connect`` test hook (what an
authenticated ``hello`` does in production).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal as D

import pytest
import pytest_asyncio

from kernel import paper_protocol as p
from kernel.execution import VenueClient
from kernel.orders import OrderManager
from kernel.reconcile import Reconciler
from kernel.venue.connection import Connection
from kernel.venue.server import PaperVenue
from storage import Journal
from storage.venue_store import read_orders
from tests.kernel.test_venue_server import LIMIT_S, Client, X, config, open_client


async def open_as(venue: PaperVenue, account: str) -> Client:
    """A client whose connection acts for ``account`` (the hello round trip: the venue serves it)."""

    def assign(conn: Connection) -> None:
        conn.account = account

    venue.on_connect = assign
    client = await open_client(venue)
    await client.hello()
    venue.on_connect = None
    return client


async def nothing_pending(client: Client) -> None:
    """The next message the client gets after a ping is its pong: nothing else was sent to it."""
    await client.send(p.Ping(id="quiet"))
    assert (await client.expect(p.Pong)).id == "quiet"


async def open_orders(client: Client) -> list[p.OrderSnapshot]:
    await client.send(p.OpenOrdersRequest(id="oo"))
    return (await client.expect(p.OpenOrders)).orders


async def fills(client: Client) -> p.Fills:
    await client.send(p.FillsSinceRequest(after=0, id="f"))
    return await client.expect(p.Fills)


@pytest_asyncio.fixture
async def venue(tmp_path: object) -> AsyncIterator[PaperVenue]:
    async with PaperVenue(f"{tmp_path}/venue.db", config()) as running:
        yield running


@pytest.mark.asyncio
async def test_another_account_cannot_see_cancel_or_replace_an_order_nor_hear_of_it(venue: PaperVenue) -> None:
    async with asyncio.timeout(LIMIT_S):
        alice, bob = await open_as(venue, "alice"), await open_as(venue, "bob")
        await alice.order("a1", qty="1", price="100")
        (new,) = await alice.executions(1)
        assert new.exec == "new"
        await venue.push_trade(X, D("99"), D("0.4"), "sell")
        (fill,) = await alice.executions(1)
        assert fill.fill is not None
        assert fill.fill.qty == D("0.4")

        assert await open_orders(bob) == []
        bob_fills = await fills(bob)
        assert (bob_fills.fills, bob_fills.last_fill_seq) == ([], 0)
        assert await bob.status("a1") is None
        await bob.send(p.CancelOrder(client_order_id="a1"))
        (cancel,) = await bob.executions(1)
        assert (cancel.exec, cancel.reason, cancel.venue_order_id) == ("cancel_rejected", "unknown order", "")
        await bob.send(p.ReplaceOrder(client_order_id="a1", qty=D("5"), price=D("200")))
        (replace,) = await bob.executions(1)
        assert (replace.exec, replace.reason, replace.venue_order_id) == ("replace_rejected", "unknown order", "")

        # Alice's order is untouched, and her later fills reach her only.
        await venue.push_trade(X, D("98"), D("0.1"), "sell")
        (second,) = await alice.executions(1)
        assert (second.cum_qty, second.leaves_qty, second.qty, second.price) == (D("0.5"), D("0.5"), D("1"), D("100"))
        await nothing_pending(bob)
        await nothing_pending(alice)
        assert [o.client_order_id for o in await open_orders(alice)] == ["a1"]
        assert [f.qty for f in (await fills(alice)).fills] == [D("0.4"), D("0.1")]
        await alice.ws.close()
        await bob.ws.close()


@pytest.mark.asyncio
async def test_the_replace_to_marketable_attack_of_the_issue_is_impossible(venue: PaperVenue) -> None:
    async with asyncio.timeout(LIMIT_S):
        victim, attacker = await open_as(venue, "victim"), await open_as(venue, "attacker")
        await venue.push_quote(X, D("99"), D("10"), D("101"), D("10"))
        for coid in ("v1", "v2"):
            await victim.order(coid, qty="0.001", price="95")
            await victim.executions(1)
        for coid in ("v1", "v2"):
            await attacker.send(p.ReplaceOrder(client_order_id=coid, qty=D("0.5"), price=D("102")))
            (answer,) = await attacker.executions(1)
            assert (answer.exec, answer.reason) == ("replace_rejected", "unknown order")
        await nothing_pending(victim)
        for coid in ("v1", "v2"):
            order = await victim.status(coid)
            assert order is not None
            assert (order.qty, order.price, order.cum_qty, order.status) == (D("0.001"), D("95"), D("0"), "new")
        assert (await fills(victim)).fills == []
        await victim.ws.close()
        await attacker.ws.close()


@pytest.mark.asyncio
async def test_the_same_client_order_id_from_another_account_is_its_own_new_order(
    venue: PaperVenue, tmp_path: object
) -> None:
    async with asyncio.timeout(LIMIT_S):
        alice, bob = await open_as(venue, "alice"), await open_as(venue, "bob")
        await alice.order("same", qty="1", price="100")
        (alice_new,) = await alice.executions(1)
        await bob.order("same", qty="2", price="200", side="sell")
        (bob_new,) = await bob.executions(1)  # an execution of a new order, not a duplicate's status
        assert (bob_new.exec, bob_new.qty, bob_new.price) == ("new", D("2"), D("200"))
        assert bob_new.venue_order_id != alice_new.venue_order_id
        await nothing_pending(alice)
        alice_order = await alice.status("same")
        assert alice_order is not None
        assert (alice_order.side, alice_order.qty, alice_order.duplicate_submits) == ("buy", D("1"), 0)
        # A resend from bob is bob's duplicate, answered with bob's order.
        await bob.order("same", qty="2", price="200", side="sell")
        dup = await bob.expect(p.OrderStatus)
        assert dup.duplicate
        assert dup.order is not None
        assert (dup.order.venue_order_id, dup.order.side) == (bob_new.venue_order_id, "sell")
        # A trade through both fills each for its own account.
        await venue.push_trade(X, D("99"), D("1"), "sell")
        (alice_fill,) = await alice.executions(1)
        assert alice_fill.venue_order_id == alice_new.venue_order_id
        await venue.push_trade(X, D("201"), D("2"), "buy")
        (bob_fill,) = await bob.executions(1)
        assert bob_fill.venue_order_id == bob_new.venue_order_id
        await nothing_pending(alice)
        await alice.ws.close()
        await bob.ws.close()


@pytest.mark.asyncio
async def test_reports_of_a_gone_owner_go_to_its_accounts_other_sessions_only(venue: PaperVenue) -> None:
    async with asyncio.timeout(LIMIT_S):
        first, bob = await open_as(venue, "alice"), await open_as(venue, "bob")
        await first.order("a1", qty="1", price="100")
        await first.executions(1)
        await first.ws.close()
        second = await open_as(venue, "alice")
        await venue.push_trade(X, D("99"), D("1"), "sell")
        (fill,) = await second.executions(1)
        assert (fill.client_order_id, fill.status) == ("a1", "filled")
        await nothing_pending(bob)
        await second.ws.close()
        await bob.ws.close()


@pytest.mark.asyncio
async def test_a_restarted_venue_keeps_who_owns_what(tmp_path: object) -> None:
    path = f"{tmp_path}/venue.db"
    async with asyncio.timeout(LIMIT_S):
        async with PaperVenue(path, config()) as venue:
            alice, bob = await open_as(venue, "alice"), await open_as(venue, "bob")
            await alice.order("same", qty="1", price="100")
            await alice.executions(1)
            await bob.order("same", qty="3", price="90")
            await bob.executions(1)
            await alice.ws.close()
            await bob.ws.close()
        assert sorted((o.account, o.client_order_id, o.qty) for o in read_orders(path)) == [
            ("alice", "same", D("1")),
            ("bob", "same", D("3")),
        ]
        async with PaperVenue(path, config()) as venue:
            alice, bob = await open_as(venue, "alice"), await open_as(venue, "bob")
            mallory = await open_as(venue, "mallory")
            assert [o.qty for o in await open_orders(alice)] == [D("1")]
            assert [o.qty for o in await open_orders(bob)] == [D("3")]
            assert await open_orders(mallory) == []
            await venue.push_trade(X, D("89"), D("4"), "sell")  # through both
            (alice_fill,) = await alice.executions(1)
            (bob_fill,) = await bob.executions(1)
            assert (alice_fill.cum_qty, bob_fill.cum_qty) == (D("1"), D("3"))
            await nothing_pending(mallory)
            assert [f.qty for f in (await fills(bob)).fills] == [D("3")]
            for client in (alice, bob, mallory):
                await client.ws.close()


@pytest.mark.asyncio
async def test_reconciliation_never_adopts_or_applies_another_accounts_orders_and_fills(
    venue: PaperVenue, tmp_path: object
) -> None:
    async with asyncio.timeout(LIMIT_S):
        mallory = await open_as(venue, "mallory")
        await mallory.order("m-open", qty="2", price="150", side="sell")
        await mallory.executions(1)
        await mallory.order("m-fill", qty="1", price="100")
        await mallory.executions(1)
        await venue.push_trade(X, D("99"), D("1"), "sell")
        assert (await mallory.executions(1))[0].status == "filled"
        path = f"{tmp_path}/k.db"
        Journal.open(path).close()
        client = VenueClient(venue.url, backoff=0.01, jitter=0.0, attempts=100)  # the kernel: account local
        await client.connect()
        journal = Journal.open(path)
        manager = OrderManager.resume(journal, client)
        report = await Reconciler(manager, grace_s=0.05).run("test restart")
        await client.close()
        journal.close()
        assert manager.orders == {}
        assert report.counts["adopted"] == 0
        assert report.differences == []
        await mallory.ws.close()
