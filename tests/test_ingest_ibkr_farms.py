"""IBKR's farm notices: which farm each names, and which outages each begins or ends (ingest.ibkr.farms).

The waiting itself is tested through the whole CLI against a scripted gateway (tests/test_ingest_gateway_variants.py).
"""

from __future__ import annotations

import pytest

from ingest.ibkr.farms import CONTRACT_DETAILS, HISTORY, FarmKind, FarmNotice, FarmStatus, parse_notice


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (1100, "Connectivity between IB and Trader Workstation has been lost.", FarmNotice(FarmKind.IBKR, "", True)),
        (
            2110,
            "Connectivity between Trader Workstation and server is broken. It will be restored automatically.",
            FarmNotice(FarmKind.IBKR, "", True),
        ),
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
            FarmNotice(FarmKind.HMDS, "ushmds", False),
        ),
        (2157, "Sec-def data farm connection is broken:secdefnj", FarmNotice(FarmKind.SEC_DEF, "secdefnj", True)),
        (2158, "Sec-def data farm connection is OK:secdefil", FarmNotice(FarmKind.SEC_DEF, "secdefil", False)),
        (2105, "HMDS data farm connection is broken", FarmNotice(FarmKind.HMDS, "", True)),  # a server naming none
        # Other builds' spellings: an "inactive" notice with a colon (was read as naming no farm, and so ended every
        # HMDS outage), a capitalised name (was another farm than the lower-case one reported broken).
        (
            2107,
            "HMDS data farm connection is inactive but should be available upon demand:ushmds",
            FarmNotice(FarmKind.HMDS, "ushmds", False),
        ),
        (2106, "HMDS data farm connection is OK:USHMDS", FarmNotice(FarmKind.HMDS, "ushmds", False)),
        (2104, "Market data farm connection is OK:usfarm.nj", None),  # market data farms serve neither request
        (2108, "Market data farm connection is inactive but should be available upon demand.usfarm.nj", None),
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
    status.note(2110, "Connectivity between Trader Workstation and server is broken.")
    assert len(status.holding(HISTORY)) == len(status.holding(CONTRACT_DETAILS)) == 1
    status.note(1101, "Connectivity between IB and TWS has been restored- data lost.")
    assert status.holding(HISTORY) == status.holding(CONTRACT_DETAILS) == []


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
