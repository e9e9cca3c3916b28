"""The ticket state machine and its role rules, as pure functions (every pair)."""

from __future__ import annotations

import itertools

import pytest

from helpdesk.rules.transitions import (
    Status,
    TransitionVerdict,
    allowed_next,
    is_final,
    judge,
    machine_allows,
)
from helpdesk.services.assignment import AgentLoad, choose_agent, spread

EDGES = {
    (Status.OPEN, Status.IN_PROGRESS),
    (Status.IN_PROGRESS, Status.RESOLVED),
    (Status.RESOLVED, Status.CLOSED),
    (Status.RESOLVED, Status.OPEN),
}
STAFF_ROLES = ("SUPPORT_AGENT", "MANAGER", "ADMINISTRATOR", "SYSTEM")
REQUESTER_EDGES = {(Status.RESOLVED, Status.CLOSED), (Status.RESOLVED, Status.OPEN)}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(Status, Status)))
def test_machine_has_exactly_the_documented_edges(current: Status, target: Status) -> None:
    assert machine_allows(current, target) is ((current, target) in EDGES)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(Status, Status)))
@pytest.mark.parametrize("role", STAFF_ROLES)
def test_staff_may_take_every_edge_and_nothing_else(
    current: Status, target: Status, role: str
) -> None:
    verdict = judge(current, target, role, is_requester=False)
    if current is target:
        assert verdict is TransitionVerdict.NO_CHANGE
    elif (current, target) in EDGES:
        assert verdict is TransitionVerdict.ALLOWED
    else:
        assert verdict is TransitionVerdict.ILLEGAL


@pytest.mark.parametrize(("current", "target"), list(itertools.product(Status, Status)))
def test_requester_may_only_close_or_reopen_a_resolved_ticket(
    current: Status, target: Status
) -> None:
    verdict = judge(current, target, "END_USER", is_requester=True)
    if current is target:
        assert verdict is TransitionVerdict.NO_CHANGE
    elif (current, target) in REQUESTER_EDGES:
        assert verdict is TransitionVerdict.ALLOWED
    elif (current, target) in EDGES:
        assert verdict is TransitionVerdict.NOT_PERMITTED
    else:
        assert verdict is TransitionVerdict.ILLEGAL


@pytest.mark.parametrize(("current", "target"), sorted(EDGES))
def test_an_end_user_who_is_not_the_requester_may_do_nothing(
    current: Status, target: Status
) -> None:
    assert judge(current, target, "END_USER", is_requester=False) is (
        TransitionVerdict.NOT_PERMITTED
    )
    assert allowed_next(current, "END_USER", is_requester=False) == []


def test_allowed_next_lists_states_in_machine_order() -> None:
    assert allowed_next(Status.RESOLVED, "MANAGER", is_requester=False) == [
        Status.CLOSED,
        Status.OPEN,
    ]
    assert allowed_next(Status.RESOLVED, "END_USER", is_requester=True) == [
        Status.CLOSED,
        Status.OPEN,
    ]
    assert allowed_next(Status.OPEN, "END_USER", is_requester=True) == []
    assert allowed_next(Status.CLOSED, "ADMINISTRATOR", is_requester=False) == []
    assert is_final(Status.CLOSED) and not is_final(Status.RESOLVED)


# --- workload balancing (pure part) ----------------------------------------------------

A = "00000000-0000-0000-0000-00000000000a"
B = "00000000-0000-0000-0000-00000000000b"
C = "00000000-0000-0000-0000-00000000000c"


def _load(agent: str, weighted: int, count: int) -> AgentLoad:
    import uuid

    return AgentLoad(uuid.UUID(agent), weighted, count)


def test_choose_agent_takes_least_weighted_load() -> None:
    # B carries one CRITICAL (8); A four LOW (4): A is less loaded despite more tickets.
    picked = choose_agent([_load(A, 4, 4), _load(B, 8, 1), _load(C, 6, 3)])
    assert str(picked) == A


def test_choose_agent_ties_go_to_fewest_tickets_then_smallest_id() -> None:
    assert str(choose_agent([_load(A, 4, 2), _load(B, 4, 1)])) == B
    assert str(choose_agent([_load(C, 4, 2), _load(B, 4, 2), _load(A, 4, 2)])) == A


def test_choose_agent_without_agents_is_none_and_spread_measures_evenness() -> None:
    assert choose_agent([]) is None
    assert spread([]) == 0
    assert spread([_load(A, 4, 2), _load(B, 10, 3)]) == 6
