"""IBKR's farm notices: which farm each names, and which outages each begins or ends (ingest.ibkr.farms).

The waiting itself is tested through the whole CLI against a scripted gateway (tests/test_ingest_gateway_variants.py).
"""

from __future__ import annotations

import pytest

from ingest.ibkr.farms import (
    CONTRACT_DETAILS,
    HISTORY,
    FarmKind,
    FarmLists,
    FarmNotice,
    FarmStatus,
    parse_farm_lists,
    parse_notice,
)

LOST = "Connectivity between IB and Trader Workstation has been lost."
LINK_BROKEN = "Connectivity between Trader Workstation and server is broken. It will be restored automatically."
RESTORED = "Connectivity between IB and Trader Workstation has been restored - data maintained."


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (1100, "Connectivity between IB and Trader Workstation has been lost.", FarmNotice(FarmKind.IBKR, "", True)),
        (2110, LINK_BROKEN, FarmNotice(FarmKind.IBKR_SERVER, "", True)),
        (1101, "Connectivity between IB and TWS has been restored- data lost.", FarmNotice(FarmKind.IBKR, "", False)),
        (
            1102,
            "Connectivity between IB and TWS has been restored - data maintained.",
            FarmNotice(FarmKind.IBKR, "", False),
        ),
        (2105, "HMDS data farm connection is broken:euhmds", FarmNotice(FarmKind.HMDS, "euhmds", True)),
        (2106, "HMDS data farm connection is OK:ushmds", FarmNotice(FarmKind.HMDS, "ushmds", False)),
        (
            2107,
            "HMDS data farm connection is inactive but should be available upon demand.ushmds",
            FarmNotice(FarmKind.HMDS, "ushmds", False, inactive=True),
        ),
        (2157, "Sec-def data farm connection is broken:secdefnj", FarmNotice(FarmKind.SEC_DEF, "secdefnj", True)),
        (2158, "Sec-def data farm connection is OK:secdefil", FarmNotice(FarmKind.SEC_DEF, "secdefil", False)),
        (2105, "HMDS data farm connection is broken", FarmNotice(FarmKind.HMDS, "", True)),  # a server naming none
        # Other builds' spellings: an "inactive" notice with a colon (was read as naming no farm, and so ended every
        # HMDS outage), a capitalised name (was another farm than the lower-case one reported broken).
        (
            2107,
            "HMDS data farm connection is inactive but should be available upon demand:ushmds",
            FarmNotice(FarmKind.HMDS, "ushmds", False, inactive=True),
        ),
        (2106, "HMDS data farm connection is OK:USHMDS", FarmNotice(FarmKind.HMDS, "ushmds", False)),
        # Market data farms serve neither kind of request, but their OK ends a 2110 and their name tells their kind.
        (2104, "Market data farm connection is OK:usfarm.nj", FarmNotice(FarmKind.MARKET_DATA, "usfarm.nj", False)),
        (
            2108,
            "Market data farm connection is inactive but should be available upon demand.usfarm.nj",
            FarmNotice(FarmKind.MARKET_DATA, "usfarm.nj", False, inactive=True),
        ),
        (2174, "Warning: You submitted request with date-time attributes without explicit time zone.", None),
    ],
)
def test_each_notice_names_its_kind_farm_and_state(code, text, expected):
    assert parse_notice(code, text) == expected


def test_a_farm_is_restored_only_by_its_own_ok_notice():
    status = FarmStatus(patience_s=60)
    status.note(2105, "HMDS data farm connection is broken:euhmds")
    status.note(2106, "HMDS data farm connection is OK:ushmds")
    assert [o.farm for o in status.holding(HISTORY)] == ["euhmds"]
    assert status.holding(CONTRACT_DETAILS) == []  # a lookup needs no HMDS farm
    status.note(1102, "Connectivity between IB and TWS has been restored - data maintained.")
    assert [o.farm for o in status.holding(HISTORY)] == ["euhmds"]  # 1102 restores IBKR-wide, not a farm
    assert [c.outage.farm for c in status.note(2106, "HMDS data farm connection is OK:euhmds")] == ["euhmds"]
    assert status.holding(HISTORY) == []


def test_ibkr_wide_outages_hold_both_kinds_of_request_and_end_with_1101_or_1102():
    status = FarmStatus(patience_s=60)
    status.note(2110, LINK_BROKEN)
    status.note(1100, LOST)
    assert len(status.holding(HISTORY)) == len(status.holding(CONTRACT_DETAILS)) == 2
    status.note(1101, "Connectivity between IB and TWS has been restored- data lost.")
    assert status.holding(HISTORY) == status.holding(CONTRACT_DETAILS) == []


def test_a_farm_ok_ends_a_broken_server_link_but_not_a_lost_ibkr_connection():
    """IBKR's primary server (1100) and its farms are separate connections: a real gateway reported 2158 and 2104
    between a 1100 and its 1102. A farm OK proves the gateway's link to IBKR's server (2110) works, nothing more."""
    status = FarmStatus(patience_s=60)
    status.note(2110, LINK_BROKEN)
    status.note(2107, "HMDS data farm connection is inactive but should be available upon demand.ushmds")
    assert [o.kind for o in status.holding(HISTORY)] == [FarmKind.IBKR_SERVER]  # "inactive" proves no link
    assert [c.outage.kind for c in status.note(2104, "Market data farm connection is OK:usfarm")] == [
        FarmKind.IBKR_SERVER
    ]
    status.note(1100, LOST)
    status.note(2110, LINK_BROKEN)
    status.note(2158, "Sec-def data farm connection is OK:secdefnj")
    status.note(2104, "Market data farm connection is OK:usfarm")
    assert [o.kind for o in status.holding(CONTRACT_DETAILS)] == [FarmKind.IBKR]  # still lost until 1101/1102
    status.note(1102, RESTORED)
    assert status.holding(HISTORY) == status.holding(CONTRACT_DETAILS) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (RESTORED, None),  # today's plain wording: no list
        (
            "Connectivity between IBKR and Trader Workstation has been restored - data maintained. All data farms are "
            "connected: eufarmnj; usfarm; ushmds; secdefnj.",
            FarmLists(connected=["eufarmnj", "usfarm", "ushmds", "secdefnj"], all_connected=True),
        ),
        (
            RESTORED + " The following farms are connected: usfarm.nj; hfarm; cashhmds. The following farms are not "
            "connected: usfuture.",
            FarmLists(connected=["usfarm.nj", "hfarm", "cashhmds"], not_connected=["usfuture"]),
        ),
        (
            RESTORED + " The following farms are connected: cashfarm; secdefil. The following farms are not "
            "connected: cashhmds.",
            FarmLists(connected=["cashfarm", "secdefil"], not_connected=["cashhmds"]),
        ),
        (  # spacing as loose as a build may write it: two spaces, a line break, a space before the colon
            RESTORED + "  The following farms are connected:  usfarm ;  secdefnj .  The following farms are  not\n"
            "connected : ushmds",
            FarmLists(connected=["usfarm", "secdefnj"], not_connected=["ushmds"]),
        ),
    ],
)
def test_a_1102_lists_the_farms_connected_and_not_as_real_gateways_word_it(text, expected):
    assert parse_farm_lists(text) == expected


def test_a_farm_a_1102_lists_as_not_connected_is_down_until_its_own_ok_unless_it_was_inactive():
    status = FarmStatus(patience_s=60)
    status.note(2106, "HMDS data farm connection is OK:ushmds")
    status.note(2107, "HMDS data farm connection is inactive but should be available upon demand.euhmds")
    status.note(2108, "Market data farm connection is inactive but should be available upon demand.usfuture")
    status.note(1100, LOST)
    changes = status.note(
        1102,
        RESTORED + " The following farms are connected: usfarm. The following farms are not connected: ushmds; "
        "euhmds; usfuture; secdefil; fundfarm.",
    )
    # IBKR is back; ushmds (last heard OK) and secdefil (a sec-def farm by its name) are down. Not euhmds: inactive
    # farms are listed as not connected, and come on demand; not usfuture, a market data farm; not fundfarm, a farm
    # this connection never heard of and whose name says no kind.
    assert [(c.outage.describe(), c.down) for c in changes] == [
        ("IBKR connectivity", False),
        ("HMDS (historical data) farm ushmds", True),
        ("sec-def farm secdefil", True),
    ]
    assert [o.farm for o in status.holding(HISTORY)] == ["ushmds"]
    status.note(2106, "HMDS data farm connection is OK:ushmds")
    assert status.holding(HISTORY) == [] and [o.farm for o in status.holding(CONTRACT_DETAILS)] == ["secdefil"]


@pytest.mark.parametrize(
    "connected",
    [
        RESTORED + " The following farms are connected: usfarm; ushmds. The following farms are not connected: x.",
        RESTORED + " All data farms are connected: usfarm.",  # all of them, ushmds too, though not named
    ],
    ids=["listed", "all"],
)
def test_the_latest_word_on_a_farm_wins_a_1102_that_lists_it_connected_ends_its_inactive_state(connected):
    """Inactive at start-up (2107), then listed as connected by a 1102: it is connected now. A later 1102 that lists it
    as not connected is an outage; it was taken for the inactive farm it no longer was, and held nothing."""
    status = FarmStatus(patience_s=60)
    status.note(2107, "HMDS data farm connection is inactive but should be available upon demand.ushmds")
    status.note(1100, LOST)
    status.note(1102, connected)
    status.note(1100, LOST)
    not_connected = RESTORED + " The following farms are connected: usfarm. The following farms are not connected: "
    status.note(1102, not_connected + "ushmds.")
    assert [o.farm for o in status.holding(HISTORY)] == ["ushmds"]
    status.note(2107, "HMDS data farm connection is inactive but should be available upon demand.ushmds")
    assert status.holding(HISTORY) == []  # inactive again: ends the outage, and its next listing holds nothing
    status.note(1102, not_connected + "ushmds.")
    assert status.holding(HISTORY) == []


def test_a_1102_ends_the_outages_of_the_farms_it_lists_as_connected_or_of_all_when_all_are():
    status = FarmStatus(patience_s=60)
    status.note(2105, "HMDS data farm connection is broken:ushmds")
    status.note(2105, "HMDS data farm connection is broken:euhmds")
    status.note(2157, "Sec-def data farm connection is broken")
    status.note(
        1102, RESTORED + " The following farms are connected: ushmds. The following farms are not connected: x."
    )
    assert [o.farm for o in status.holding(HISTORY)] == ["euhmds"] and len(status.holding(CONTRACT_DETAILS)) == 1
    status.note(1102, RESTORED)  # no list: IBKR-wide only, as before
    assert len(status.holding(HISTORY)) == len(status.holding(CONTRACT_DETAILS)) == 1
    status.note(1102, RESTORED + " All data farms are connected: usfarm; ushmds.")
    assert status.holding(HISTORY) == status.holding(CONTRACT_DETAILS) == []


def test_a_request_meets_the_outages_it_goes_out_into_or_that_are_reported_while_it_is_out():
    status = FarmStatus(patience_s=60)
    status.note(2105, "HMDS data farm connection is broken:ushmds")
    status.note(2106, "HMDS data farm connection is OK:ushmds")
    mark = status.mark(HISTORY)  # an outage over before the request went out: not met
    assert not status.met_since(HISTORY, mark)
    status.note(2157, "Sec-def data farm connection is broken:secdefnj")
    assert not status.met_since(HISTORY, mark)  # a farm it does not use
    status.note(2105, "HMDS data farm connection is broken:ushmds")
    assert status.met_since(HISTORY, mark)
    into = status.mark(HISTORY)  # goes out while ushmds is down: met, even with no new notice
    assert status.met_since(HISTORY, into)


def test_an_ok_notice_that_names_no_farm_ends_every_outage_of_its_kind():
    status = FarmStatus(patience_s=60)
    status.note(2157, "Sec-def data farm connection is broken:secdefnj")
    status.note(2157, "Sec-def data farm connection is broken:secdefil")
    status.note(2105, "HMDS data farm connection is broken:ushmds")
    assert len(status.note(2158, "Sec-def data farm connection is OK")) == 2
    assert status.holding(CONTRACT_DETAILS) == [] and len(status.holding(HISTORY)) == 1


def test_an_outage_is_waited_out_after_the_patience_from_its_notice_and_a_repeat_starts_no_new_wait():
    now = [100.0]
    status = FarmStatus(patience_s=5, clock=lambda: now[0])
    assert len(status.note(2105, "HMDS data farm connection is broken:euhmds")) == 1
    now[0] = 103.0
    assert status.note(2105, "HMDS data farm connection is broken:euhmds") == []  # repeated: nothing new
    assert status.seconds_left(status.holding(HISTORY)[0]) == 2.0
    assert status.wait_out(HISTORY) == []
    now[0] = 105.0
    assert [o.farm for o in status.wait_out(HISTORY)] == ["euhmds"]
    assert status.holding(HISTORY) == [] and status.wait_out(HISTORY) == []  # given up on once
    status.note(2105, "HMDS data farm connection is broken:euhmds")
    assert status.holding(HISTORY) == []  # still the same outage, still given up on
    assert status.reported(HISTORY) == 1 and status.reported(CONTRACT_DETAILS) == 0


def test_a_new_connection_starts_with_no_outage_but_keeps_the_count_of_those_reported():
    status = FarmStatus(patience_s=60)
    status.note(1100, "Connectivity between IB and Trader Workstation has been lost.")
    status.reset()
    assert status.holding(HISTORY) == [] and status.reported(HISTORY) == 1
