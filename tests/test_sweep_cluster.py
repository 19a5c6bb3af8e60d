"""The same sweep on a real two-node Ray cluster on this machine (a head and a second node, one CPU each, joined
through RAY_ADDRESS as a user would): trials run on both nodes, and the driver alone writes the warehouse."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devtools.synthetic_mart import lay_out_folds, mart_database, synthetic_mart, write_mart_yaml
from training.sweep import SweepConfig, run_sweep
from warehouse_db import connect
from warehouse_db.settings import ConnectionSettings

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ray")]  # a Ray cluster, PPO and the warehouse


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[object]:
    """A head node and a second node with their own raylets and one CPU each.

    Their own Ray temp dir (RAY_TMPDIR while they start and stop) keeps the cluster's address out of
    /tmp/ray/ray_current_cluster, where another process's ray.init() could otherwise find it and join it, and where
    the file, left behind when a run was killed, was this OS user's alone: every other user's `ray start` then ended in
    a PermissionError. (A temp_dir argument alone moves the session files, not that file.) The cluster is protected by a token, as `ray start` protects one by default: a
    driver joining through RAY_ADDRESS sends the token it finds in ~/.ray/auth_token, and a cluster started without
    token authentication then refuses the trials' requests ("Missing authorization header"; the actors die). Whether
    this process had turned token authentication on already depended on which tests ran before in it.
    """
    from ray._private.authentication.authentication_token_setup import AUTH_MODE_ENV_VAR, _enable_token_auth
    from ray.cluster_utils import Cluster

    from training.task_runners import _keep_token_private

    mode_before = os.environ.get(AUTH_MODE_ENV_VAR)
    _enable_token_auth()  # this process and the nodes it starts
    _keep_token_private(create=True)  # the token the nodes and the driver read, created if there is none
    temp_dir = tempfile.mkdtemp(prefix="ray-sweep-", dir="/tmp")  # short: Ray's sockets live under it
    cluster = None
    try:
        with ray_tmpdir(temp_dir):
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
        yield cluster
    finally:
        if cluster is not None:
            with ray_tmpdir(temp_dir):  # shutdown() deletes the address file it finds there
                cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)  # also when the head did not start
        if mode_before is None:
            os.environ.pop(AUTH_MODE_ENV_VAR, None)
        else:
            os.environ[AUTH_MODE_ENV_VAR] = mode_before


@contextmanager
def ray_tmpdir(path: str) -> Iterator[None]:
    before = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = path
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("RAY_TMPDIR")
        else:
            os.environ["RAY_TMPDIR"] = before


@pytest.fixture(scope="module")
def cluster_warehouse(embedded_cluster: ConnectionSettings) -> Iterator[ConnectionSettings]:
    frame = synthetic_mart(n_symbols=4, n_sessions=320, seed=62)
    folds = lay_out_folds(frame["session_date"], folds=2, test_sessions=40, validation_sessions=40)
    with mart_database("test_sweep_cluster", frame, folds, embedded_cluster) as settings:
        yield settings


def test_trials_run_on_both_nodes_of_a_cluster_joined_through_ray_address(
    two_nodes, cluster_warehouse: ConnectionSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray
    from ray._common.utils import get_ray_address_file

    shared = Path(get_ray_address_file(None))  # /tmp/ray/ray_current_cluster, or under the user's RAY_TMPDIR
    assert not (shared.exists() and shared.read_text(encoding="utf-8") == two_nodes.address)
    monkeypatch.setenv("RAY_ADDRESS", two_nodes.address)
    (tmp_path / "space.yaml").write_text("learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\n", encoding="utf-8")
    config = SweepConfig(
        timesteps=256, eval_freq=256, n_envs=2, n_steps=64, batch_size=64, n_epochs=1, random_draws=5,
        trials=2, max_concurrent=2, search_folds=1, final_walk_forward=False, early_stopping=False,
        space=tmp_path / "space.yaml", runs_dir=tmp_path / "runs", progress_bar=False,
        mart_yaml=write_mart_yaml(tmp_path / "training_bars.yml"),
    )  # fmt: skip
    result = run_sweep(config, cluster_warehouse)
    assert not ray.is_initialized()  # the sweep joined the cluster and left it

    node_ids = {node.node_id[:12] for node in (two_nodes.head_node, *two_nodes.worker_nodes)}
    with connect(cluster_warehouse, role="analyst") as conn:
        rows = conn.execute(
            "select state, node from ml.sweep_trials where sweep_id = %s order by trial_number", (result.sweep_id,)
        ).fetchall()
        sweep = conn.execute(
            "select status, ray_address, ray_nodes from ml.sweeps where sweep_id = %s", (result.sweep_id,)
        ).fetchone()
    assert [state for state, _ in rows] == ["completed", "completed"]
    assert {node.split("/")[1] for _, node in rows} == node_ids and len(node_ids) == 2  # one trial on each node
    assert sweep == ("finished", two_nodes.address, 2)
