"""Where fold x seed tasks run: in this process (``make train``, tests) or as independent tasks on Ray.

Ray: by default ``ray.init()`` starts a local Ray for the run (one task per CPU) and stops it afterwards; with an
address (``--ray-address`` or ``RAY_ADDRESS``) the same tasks run on an existing cluster, whose nodes need this
project installed (the same requirements.txt, ``pip install -e .``). The driver puts the mart rows into Ray's object
store once; every task reads them from there, so workers never connect to the warehouse. Each task asks Ray for one
CPU and the memory PPO's settings add (training/ppo.py ``memory_needed``; not the few hundred MiB of Python, PyTorch
and the mart rows that every task costs whatever its settings), so tasks whose settings would together need more than
a node offers wait their turn. A task that fails is submitted again (``task_retries`` times; after another task
has finished when it ran out of memory or its worker died) and then reported by fold and seed; the other tasks still
land.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from command_line import INTERRUPTING_SIGNALS, path_is_file, progress_disabled
from training.config import TrainConfig, ray_address_problem
from training.envs.spaces import observation_size
from training.folds import Fold
from training.market_data import MarketData
from training.statistics import counted

if TYPE_CHECKING:
    from training.fold_task import TaskResult

logger = logging.getLogger(__name__)

Task = tuple[Fold, int]
"""(fold, seed)."""
TaskFunction = Callable[[TrainConfig, MarketData, Fold, int], "TaskResult"]


def fold_seed_task(config: TrainConfig, data: MarketData, fold: Fold, seed: int) -> TaskResult:
    """One fold x seed (training/fold_task.py), the runners' task. The task's modules (torch, stable-baselines3) load
    when the first task runs, in the process that runs it: a command that builds a runner answers --help and its
    one-line errors (a warehouse that does not answer) without waiting seconds for them."""
    from training.fold_task import run_fold_seed

    return run_fold_seed(config, data, fold, seed)


class RayUnavailable(RuntimeError):
    """The Ray cluster named by --ray-address / RAY_ADDRESS does not answer."""


class BadRayAddress(ValueError):
    """--ray-address / RAY_ADDRESS is not an address at all (a bad value, not a cluster that does not answer)."""


@dataclass(frozen=True)
class TaskFailure:
    fold_id: int
    seed: int
    attempts: int
    error: str
    """The last attempt's exception, as one line."""
    out_of_memory: bool = False
    """Whether it failed for want of memory (Ray's memory monitor killed it, or a MemoryError: NumPy's, or the task's
    own memory check, SettingsTooLarge)."""


@dataclass
class RunnerOutcome:
    results: list[TaskResult] = field(default_factory=list)
    failures: list[TaskFailure] = field(default_factory=list)
    ray_address: str | None = None
    """The cluster the tasks ran on (None: this process)."""
    nodes: int = 1


def _progress(total: int, enabled: bool) -> tqdm:
    return tqdm(
        total=total, unit="task", desc="fold x seed tasks", dynamic_ncols=True, disable=progress_disabled(enabled)
    )


#: How the finished-task line names the validation score that selected the checkpoint (TrainConfig.selection_metric).
SELECTION_METRIC_WORDS = {"sharpe": "Sharpe", "sortino": "Sortino", "total_return": "total return"}


def _log_finished(result: TaskResult, selection_metric: str) -> None:
    test = result.replays["test"]
    logger.info(
        "fold %d seed %d finished in %.0f s: the checkpoint at %d steps, chosen by its validation %s (%.2f); test "
        "Sharpe agent %.2f, buy-and-hold %.2f",
        result.fold_id,
        result.seed,
        result.wall_seconds,
        result.selected_step,
        SELECTION_METRIC_WORDS.get(selection_metric, selection_metric),
        result.validation_score,
        test["agent"].metrics()["sharpe"],
        test["buy_and_hold"].metrics()["sharpe"],
    )
    # Logged here, on the driver: a Ray worker's own log lines do not reach the console or run.log.
    for split, symbols in result.left_out.items():
        if symbols:
            logger.info("fold %d seed %d: %d symbol(s) have too few sessions in the %s split and sat it out: %s",
                        result.fold_id, result.seed, len(symbols), split, ", ".join(symbols[:10]))  # fmt: skip


@dataclass
class InProcessRunner:
    """Every task, one after another, in this process; exceptions propagate (``make train`` runs one task)."""

    task: TaskFunction = fold_seed_task

    def prepare(self) -> None:
        pass

    def run(self, config: TrainConfig, data: MarketData, tasks: Sequence[Task]) -> RunnerOutcome:
        outcome = RunnerOutcome()
        for fold, seed in tasks:
            result = self.task(config, data, fold, seed)
            result.node = socket.gethostname()
            outcome.results.append(result)
            _log_finished(result, config.selection_metric)
        return outcome


def _remote_task(task: TaskFunction, config: TrainConfig, data: MarketData, fold: Fold, seed: int) -> TaskResult:
    import ray

    result = task(config, data, fold, seed)
    result.node = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:12]}/pid {os.getpid()}"
    return result


WORKER_DIED = (
    "the worker process running the task died without a Python error; Ray does not say why (no exit status or "
    "signal): a crash (a segfault, os._exit), a kill -9, or the kernel's out-of-memory killer (look for it in `dmesg` "
    "on the task's node); the worker's own log is python-core-worker-*.log in Ray's session logs"
)
"""What a task's failure says when its worker died: Ray's WorkerCrashedError carries nothing but the fact."""


def _cause(error: BaseException) -> BaseException:
    import ray.exceptions

    return error.cause if isinstance(error, ray.exceptions.RayTaskError) and error.cause is not None else error


def _one_line(error: BaseException) -> str:
    import ray.exceptions

    cause = _cause(error)
    if isinstance(cause, ray.exceptions.WorkerCrashedError):  # Ray's own text points at logs only
        return f"{type(cause).__name__}: {WORKER_DIED}"
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}".strip()


def _out_of_memory(error: BaseException) -> bool:
    """Whether a task failed for want of memory: killed by Ray's memory monitor (``OutOfMemoryError``), or a
    ``MemoryError`` (NumPy's, or the task's own memory check) while others held the memory."""
    import ray.exceptions

    return isinstance(_cause(error), (ray.exceptions.OutOfMemoryError, MemoryError))


def _worker_died(error: BaseException) -> bool:
    """Whether the task's worker process died (``WorkerCrashedError``): a crash, a kill, or the kernel's out-of-memory
    killer, whose SIGKILL Ray cannot tell from the others."""
    import ray.exceptions

    return isinstance(_cause(error), ray.exceptions.WorkerCrashedError)


def _use_token_authentication(joining_a_cluster: bool) -> None:
    """Choose Ray's token authentication explicitly (RAY_AUTH_MODE=token), unless the user set RAY_AUTH_MODE.

    Ray 2.60 protects the Ray it starts with a token by default, but says so on every run ("Set RAY_AUTH_MODE=disabled
    to opt out") unless RAY_AUTH_MODE=token chose it; and a driver given an explicit address only sends the token
    (the one `ray start` keeps in ~/.ray/auth_token, or RAY_AUTH_TOKEN) when RAY_AUTH_MODE=token: without it the
    connection is refused after some 20 s of retries. Joining a cluster, there must be a token to send.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return  # the user decided
    if joining_a_cluster:
        token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        if not (os.environ.get("RAY_AUTH_TOKEN") or path_is_file(token_file)):
            return
    # What ray.init does for a Ray it starts: RAY_AUTH_MODE=token, and Ray's cached config refreshed.
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    _enable_token_auth()


def _keep_token_private(create: bool) -> None:
    """Ray's token, the key to the clusters started on this machine, readable by this user only.

    Whoever holds it may run code in a cluster's workers as this user, and a local Ray's workers inherit the driver's
    environment (DATABASE_URL, WAREHOUSE_*_PASSWORD where the shell exports them). Ray writes the token it generates
    to ~/.ray/auth_token with the umask's mode (0644 mostly), which every local user may read wherever the home
    directory may be entered: for a Ray this run starts (``create``) the token is created here first, 0600 in a 0700
    folder, and a token file that others may read loses their access (with a warning)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return  # the token is in the environment: Ray reads no file
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(named) if named and path_is_file(named) else Path.home() / ".ray" / "auth_token"
    try:
        if not path.exists():
            if not create:
                return  # joining a cluster without its token: Ray says so
            from ray._private.authentication.authentication_token_generator import generate_new_authentication_token

            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise  # another run created it just now (below)
            except OSError as error:
                # A read-only home (or HOME a file): Ray would fail to write it there, in a traceback. This run's Ray
                # takes a token from the environment instead, which its own processes inherit.
                logger.info("%s cannot be written (%s): this run's Ray keeps its token in its environment", path,
                            error.strerror or error)  # fmt: skip
                os.environ["RAY_AUTH_TOKEN"] = generate_new_authentication_token()
                return
            with os.fdopen(fd, "w", encoding="utf-8") as token:
                token.write(generate_new_authentication_token())
            return
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(mode & 0o700)
            logger.warning(
                "%s (the key to the Ray clusters started here) was readable by other users (mode %o): it is now %o",
                path,
                mode,
                mode & 0o700,
            )
    except FileExistsError:
        pass  # another run created it just now, as this one would have
    except OSError as error:  # not ours to change, a read-only home: Ray goes on as it would have
        logger.warning("could not make %s readable by this user only: %s", path, error.strerror or error)


def _python_for_workers() -> dict[str, str] | None:
    """A runtime environment whose Python is this one, quoted, where its path needs quoting (a clone under
    ``~/My Projects/``). Ray starts a worker that has a runtime environment (every Ray Tune trial has one) through
    ``bash -c "exec <python> ..."`` with the path unquoted: each trial's worker failed to start, five times, and the
    sweep ended after minutes with no trial scored. Ray takes ``py_executable`` as a command, so a quoted path is
    one word; for a local Ray only (a cluster's nodes have Pythons of their own)."""
    quoted = shlex.quote(sys.executable)
    return {"py_executable": quoted} if quoted != sys.executable else None


def _usable_temp_dir_for_ray() -> None:
    """Ray keeps a local Ray's session files and sockets under RAY_TMPDIR, else TMPDIR, else /tmp, and unlike Python
    takes TMPDIR as it is: a TMPDIR that is missing, a file or read-only ended the run in an OSError traceback. Then
    it gets the directory Python's own temporary files go to (the first usable of TMPDIR, /tmp, /var/tmp, ...)."""
    if os.environ.get("RAY_TMPDIR") or not os.environ.get("TMPDIR"):
        return  # RAY_TMPDIR is the user's choice (an unusable one: one line, from ray.init's OSError); /tmp is fine
    named = os.environ["TMPDIR"]
    if os.path.isdir(named) and os.access(named, os.W_OK | os.X_OK):
        return
    import tempfile

    usable = tempfile.gettempdir()
    if os.path.realpath(usable) == os.path.realpath(named):
        return
    logger.warning(
        "TMPDIR=%s is not a directory this run can write to: Ray keeps its session files in %s", named, usable
    )
    os.environ["RAY_TMPDIR"] = usable


@contextmanager
def signal_handlers_kept(*signals: signal.Signals) -> Iterator[None]:
    """Whatever the block installs for ``signals``, the handlers they had come back after it (main thread only: the
    others can neither read nor set them). ray.init takes over SIGTERM (a C++ stack dump, then abort) and Ray Tune's
    fit leaves its SIGINT handler behind; the commands keep their own (training/cli.py: SIGTERM interrupts a run as
    Ctrl+C does)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {number: signal.getsignal(number) for number in signals}
    try:
        yield
    finally:
        for number, handler in handlers.items():
            if handler is not None:  # None: a handler not set from Python, which Python cannot put back
                signal.signal(number, handler)


@contextmanager
def interruptions_held() -> Iterator[None]:
    """Ctrl+C, SIGTERM or SIGHUP waits until the block is done, then interrupts: ray.shutdown stopped halfway leaves Ray's
    processes behind, and Ray then ends this process with status 1 before the run can say it was interrupted."""
    received: list[int] = []
    with signal_handlers_kept(signal.SIGINT, *INTERRUPTING_SIGNALS):
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, *INTERRUPTING_SIGNALS):
                if signal.getsignal(number) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                    signal.signal(number, lambda signum, frame: received.append(signum))
        yield
    if received:
        raise KeyboardInterrupt


def check_ray_address(address: str, timeout: float, source: str = "--ray-address") -> None:
    """Fail within ``timeout`` seconds, with one clear line, when nothing listens at ``address``
    (:class:`BadRayAddress` when ``address``, from ``source``, is not an address)."""
    if problem := ray_address_problem(address):
        raise BadRayAddress(f"{source} {problem}")
    if address in ("auto", "local"):
        return
    parsed = urlsplit(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname, parsed.port
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        raise RayUnavailable(
            f"no Ray cluster answers at {address} ({error.strerror or error} within {timeout:g} s): start one with "
            f"`ray start --head --port={port}`, or leave out --ray-address and RAY_ADDRESS to run on a local Ray"
        ) from None
    # Something listens; ray.init would wait minutes on a port that is not Ray's. Ray's head (and Ray Client) speak
    # gRPC: a gRPC channel becomes ready within a fraction of a second, and never on another server.
    if os.environ.get("RAY_USE_TLS", "0") not in ("1", "true", "True"):
        import grpc

        channel = grpc.insecure_channel(f"{host}:{port}")
        try:
            grpc.channel_ready_future(channel).result(timeout=max(timeout - (time.perf_counter() - started), 1.0))
        except grpc.FutureTimeoutError:
            raise RayUnavailable(
                f"something listens at {address} but does not answer as Ray (no gRPC answer within {timeout:g} s): "
                f"give the address of the Ray head (`ray start --head --port=PORT` prints it), or leave out "
                "--ray-address and RAY_ADDRESS to run on a local Ray"
            ) from None
        finally:
            channel.close()


def largest_memory_offer(nodes: Sequence[dict]) -> int:
    """The largest `memory` resource a live Ray node that can run a task (one CPU) offers, in bytes; 0 when none
    offers any (``ray start --memory 0``). ``nodes`` as ``ray.nodes()`` reports them."""
    return int(
        max(
            (
                node["Resources"].get("memory", 0)
                for node in nodes
                if node.get("Alive") and node["Resources"].get("CPU", 0) >= 1
            ),
            default=0,
        )
    )


def _log_cluster(tasks: int, address: str | None, nodes: int, cpus: int, task_memory: int | None) -> None:
    from training.ppo import size_text  # torch: see fold_seed_task

    logger.info(
        "%s on %s (%s, %d CPUs); %s",
        counted(tasks, "fold x seed task"),
        f"the Ray cluster at {address}" if address else "a local Ray",
        counted(nodes, "node"),
        cpus,
        f"Ray starts a task only where {size_text(task_memory)} of its memory resource is free (PPO's buffers and "
        "networks, at the least)"
        if task_memory
        else "its nodes offer no memory resource, so each task checks its own machine's memory",
    )


class _TaskQueue:
    """The tasks submitted to Ray and not finished (``pending``: each one's fold, seed and attempt by its result's
    reference), and the retries ``waiting`` for another task to finish first: a task that ran out of memory, retried
    at once, usually meets the pressure that killed it and fails twice."""

    def __init__(self, start: Callable[[Fold, int], object]) -> None:
        self._start = start
        self.pending: dict[object, tuple[Fold, int, int]] = {}
        self.waiting: list[tuple[Fold, int, int]] = []

    def submit(self, fold: Fold, seed: int, attempt: int) -> None:
        self.pending[self._start(fold, seed)] = (fold, seed, attempt)

    def unfinished(self) -> bool:
        return bool(self.pending or self.waiting)

    def next_finished(self) -> tuple[object, tuple[Fold, int, int]]:
        """The next task to finish (its reference, fold, seed and attempt), no longer pending."""
        import ray

        if not self.pending:  # nothing else runs, so nothing else will free memory: retry now
            self.submit(*self.waiting.pop(0))
        (ready,), _ = ray.wait(list(self.pending), num_returns=1)
        return ready, self.pending.pop(ready)

    def let_one_waiting_go(self, finished: Fold, finished_seed: int) -> None:
        if self.waiting:
            fold, seed, attempt = self.waiting.pop(0)
            logger.info("fold %d seed %d: retrying now that fold %d seed %d has finished", fold.fold_id,
                        seed, finished.fold_id, finished_seed)  # fmt: skip
            self.submit(fold, seed, attempt)


@dataclass
class RayRunner:
    """Each task on Ray with one CPU and PPO's memory estimate, retried ``retries`` times on failure; a progress bar
    counts finished tasks."""

    address: str | None = None
    cpus: int | None = None
    connect_timeout: float = 15.0
    retries: int = 1
    progress_bar: bool = True
    task: TaskFunction = fold_seed_task

    def prepare(self) -> None:
        """Check that the configured cluster answers before any work is done."""
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        if address:
            check_ray_address(address, self.connect_timeout, "--ray-address" if self.address else "RAY_ADDRESS")

    def _connect(self) -> tuple[bool, str | None]:
        """(whether this runner started Ray and must stop it, the cluster address or None for a local Ray)."""
        import ray

        if ray.is_initialized():  # a caller (the sweep, a test) holds a Ray session already: use it
            return False, self.address or os.environ.get("RAY_ADDRESS") or None
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        if address:
            check_ray_address(address, self.connect_timeout, "--ray-address" if self.address else "RAY_ADDRESS")
        _use_token_authentication(joining_a_cluster=address is not None)
        if os.environ.get("RAY_AUTH_MODE") == "token":
            _keep_token_private(create=address in (None, "local"))
        if not address:
            _usable_temp_dir_for_ray()
        with signal_handlers_kept(*INTERRUPTING_SIGNALS):  # ray.init takes SIGTERM over; the commands keep theirs
            if address:
                try:
                    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
                except (ConnectionError, RuntimeError, TimeoutError) as error:
                    raise RayUnavailable(
                        f"could not join the Ray cluster at {address}: {error} (a cluster with token authentication, "
                        "Ray's default, needs its token in ~/.ray/auth_token or RAY_AUTH_TOKEN on this machine)"
                    ) from None
                return True, address
            try:
                ray.init(
                    address="local",  # a new Ray for this run, even when a cluster runs on this machine ('auto' joins)
                    num_cpus=self.cpus or os.cpu_count(),
                    # Ray runs its workers at nice 15; the run's tasks deserve the priority they would have run serially.
                    _system_config={"worker_niceness": 0},
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                    runtime_env=_python_for_workers(),
                )
            except OSError as error:  # RAY_TMPDIR a file, read-only or full, say
                raise RayUnavailable(
                    f"could not start a local Ray: {error.strerror or error}: {error.filename} (Ray keeps its session "
                    "files under RAY_TMPDIR, else TMPDIR, else /tmp: point RAY_TMPDIR at a writable directory)"
                ) from None
        return True, None

    def run(self, config: TrainConfig, data: MarketData, tasks: Sequence[Task]) -> RunnerOutcome:
        import ray

        started_here, address = self._connect()
        try:
            alive = [node for node in ray.nodes() if node.get("Alive")]
            nodes, cpus = len(alive), int(ray.cluster_resources().get("CPU", 0))
            task_memory = self._check_task_memory(config, data, alive)
            _log_cluster(len(tasks), address, nodes, cpus, task_memory)
            # Ray's scheduler starts a task on a node only while the memory its running tasks declared leaves room for
            # the new one's: tasks that would together need more than a node offers wait instead of being killed.
            remote = ray.remote(num_cpus=1, memory=task_memory, max_retries=0)(_remote_task)
            started = time.perf_counter()
            data_ref = ray.put(data)
            config_ref = ray.put(config)
            queue = _TaskQueue(lambda fold, seed: remote.remote(self.task, config_ref, data_ref, fold, seed))
            for fold, seed in tasks:
                queue.submit(fold, seed, 1)
            outcome = self._collect_all(
                queue, len(tasks), RunnerOutcome(ray_address=address, nodes=nodes), config.selection_metric
            )
            logger.info("tasks done in %.0f s", time.perf_counter() - started)
            return outcome
        finally:
            if started_here:
                with interruptions_held():
                    ray.shutdown()

    def _collect_all(
        self, queue: _TaskQueue, total: int, outcome: RunnerOutcome, selection_metric: str
    ) -> RunnerOutcome:
        """Every task's result or failure, in the order they finish."""
        # On a terminal, log lines go above the bar (tqdm.write) instead of being appended to its line.
        with _progress(total, self.progress_bar) as bar, nullcontext() if bar.disable else logging_redirect_tqdm():
            while queue.unfinished():
                ready, (fold, seed, attempt) = queue.next_finished()
                perhaps_memory = self._collect(ready, fold, seed, attempt, queue, outcome, bar, selection_metric)
                if not perhaps_memory:  # its memory is free again (after a kill for memory, the pressure stays)
                    queue.let_one_waiting_go(fold, seed)
        return outcome

    def _collect(
        self,
        ready,
        fold: Fold,
        seed: int,
        attempt: int,
        queue: _TaskQueue,
        outcome: RunnerOutcome,
        bar: tqdm,
        selection_metric: str,
    ) -> bool:
        """One finished task: its result, or its failure retried (at once, or after another task) or given up.
        Whether it failed for want of memory, or its worker died (perhaps for that)."""
        import ray
        import ray.exceptions

        try:
            result = ray.get(ready)
        except ray.exceptions.RayError as error:
            message, worker_died = _one_line(error), _worker_died(error)
            perhaps_memory = worker_died or _out_of_memory(error)
            if attempt > self.retries:
                logger.error("fold %d seed %d failed %d times: %s", fold.fold_id, seed, attempt, message)
                outcome.failures.append(TaskFailure(fold.fold_id, seed, attempt, message, _out_of_memory(error)))
                bar.update(1)
            elif perhaps_memory and queue.pending:
                # A dead worker may have been the kernel's out-of-memory killer: its retry waits too.
                logger.warning("fold %d seed %d failed (%s); retrying once another task has finished%s",
                               fold.fold_id, seed, message,
                               " (in case it died for want of memory)" if worker_died else "")  # fmt: skip
                queue.waiting.append((fold, seed, attempt + 1))
            else:
                logger.warning("fold %d seed %d failed (%s); retrying", fold.fold_id, seed, message)
                queue.submit(fold, seed, attempt + 1)
            return perhaps_memory
        result.attempts = attempt
        outcome.results.append(result)
        _log_finished(result, selection_metric)
        bar.update(1)
        return False

    @staticmethod
    def _check_task_memory(config: TrainConfig, data: MarketData, nodes: Sequence[dict]) -> int | None:
        """The memory one task declares to Ray (PPO's estimate, as the task checks it), after checking that some node
        can ever hold it: Ray leaves a task that asks more than any node has pending for ever, without a word.

        None (declare nothing) on a cluster whose nodes offer no memory resource at all (``ray start --memory 0``):
        a task that declared some would never start there; each task then checks its own machine, as a serial run
        does."""
        from training.ppo import check_memory, memory_needed  # torch: see fold_seed_task

        observation = observation_size(config.window, n_features=len(data.feature_names))
        offered = largest_memory_offer(nodes)
        if not offered:
            return None
        check_memory(
            config,
            observation,
            available=offered,
            available_is="is the most a node of the Ray cluster offers (its memory resource: what Ray found free "
            "when the node started, less its object store)",
        )
        return memory_needed(config, observation)
