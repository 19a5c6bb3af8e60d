"""A local IB Gateway simulator speaking the real TWS socket protocol.

Tests, CI and new users have no gateway; this package stands in for one on
127.0.0.1 so the real ``ib_async`` client (and ib_insync) can connect, qualify
US stocks and fetch deterministic historical bars over real NYSE sessions, with
IBKR's error codes, pacing rules and injectable faults.

    from gateway_simulator import GatewaySimulator, SimulatorConfig
    sim = GatewaySimulator(SimulatorConfig(seed=7))
    await sim.start(host="127.0.0.1", port=0)
    ...  # connect ib_async to sim.port
    await sim.stop()

or, from synchronous code, ``with run_simulator_in_thread(config) as sim: ...``.
Run ``python -m gateway_simulator --help`` for the command line.
"""

from .pacing import PacingLimits, PacingRequest, PacingRules
from .protocol import (
    ERR_CLIENT_ID_IN_USE,
    ERR_HMDS,
    ERR_NO_SECURITY,
    ERR_VALIDATION,
    TEXT_NO_SECURITY,
    TEXT_PACING_VIOLATION,
)
from .server import (
    GatewaySimulator,
    HistoricalRequestRecord,
    SimulatorConfig,
    SimulatorStats,
    Split,
    run_simulator_in_thread,
)

__all__ = [
    "ERR_CLIENT_ID_IN_USE",
    "ERR_HMDS",
    "ERR_NO_SECURITY",
    "ERR_VALIDATION",
    "GatewaySimulator",
    "HistoricalRequestRecord",
    "PacingLimits",
    "PacingRequest",
    "PacingRules",
    "SimulatorConfig",
    "SimulatorStats",
    "Split",
    "TEXT_NO_SECURITY",
    "TEXT_PACING_VIOLATION",
    "run_simulator_in_thread",
]
