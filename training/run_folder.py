"""A run's or sweep's folder under ``--runs-dir``: claiming it (one exclusive ``mkdir``, so that two runs started at
once never share one), refusing one in use with a line that names the flag that avoids it, writing into it with a
one-line error on a full disk, and removing the folder of a run that ended before its tasks were done.

Used by the walk-forward (training/walk_forward.py, which ``make train`` runs too) and the sweep (training/sweep.py).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)


class RunFolderError(ValueError):
    """The run folder cannot be created under --runs-dir (not a folder, no permission, a read-only disk), or not be
    written whole (a full disk)."""


@contextmanager
def writing_run_folder(
    run_dir: Path,
    remedy: str = "free some space or choose another --runs-dir, and run again (nothing of this run landed in the "
    "warehouse)",
) -> Iterator[None]:
    """An ``OSError`` while writing the run folder (a full disk, a quota, a file system gone read-only during the run)
    as a one-line :class:`RunFolderError` that ends with ``remedy``: it was a traceback, after the whole run."""
    try:
        yield
    except OSError as error:
        raise RunFolderError(f"cannot write the run folder {run_dir} ({error.strerror or error}): {remedy}") from None


FRESH_ID_ATTEMPTS = 5
"""How many generated run ids a run tries before it gives up (each collides only with a run started the same second
that drew the same random suffix)."""


def folder_in_use(run_dir: Path) -> bool:
    """Whether ``run_dir`` is not free for a new run or sweep: it exists (with files in it, it is another run's or
    sweep's; empty, it may be one that started a moment ago), or something that is not a folder is in the way."""
    return run_dir.exists() or run_dir.is_symlink()


def _used_folder(run_dir: Path, flag: str) -> FileExistsError:
    if not run_dir.is_dir():  # a file, or a link to nothing
        return FileExistsError(f"{run_dir} already exists and is not a folder: choose another {flag}")
    if not any(run_dir.iterdir()):
        return FileExistsError(
            f"run folder {run_dir} already exists, empty (another run or sweep with this id may have just started): "
            f"choose another {flag}, or remove the empty folder"
        )
    return FileExistsError(f"run folder {run_dir} already exists and is not empty: choose another {flag}")


def refuse_used_folder(run_dir: Path, flag: str) -> None:
    """Raise unless ``run_dir`` is free for a new run or sweep (:func:`folder_in_use`). A check, not a claim: two runs
    started at once both pass it; :func:`claim_run_folder` tells them apart."""
    if folder_in_use(run_dir):
        raise _used_folder(run_dir, flag)


def make_run_folder(run_dir: Path, *, exclusive: bool = False) -> None:
    """Create ``run_dir`` (and ``--runs-dir`` above it); ``exclusive``: FileExistsError when the folder exists."""
    try:
        run_dir.mkdir(parents=True, exist_ok=not exclusive)
    except OSError as error:
        # The folder's own name is taken (by a folder, a file or a link), not --runs-dir unusable: the caller says so.
        if exclusive and isinstance(error, FileExistsError) and (run_dir.exists() or run_dir.is_symlink()):
            raise
        raise RunFolderError(
            f"cannot create the folder {run_dir} ({error.strerror or error}): choose another --runs-dir"
        ) from None


def claim_run_folder(runs_dir: Path, run_id: str, flag: str, fresh_id: Callable[[], str] | None = None) -> str:
    """Create the folder of a new run or sweep, ``runs_dir / run_id``, and return its id. The creation is the claim
    (one ``mkdir``, which the file system grants to one process only): two runs or sweeps started at once with one id,
    given twice or generated alike, never share a folder. The second is refused (FileExistsError, naming ``flag``),
    or, when its id was generated (``fresh_id`` makes another), tries a fresh id."""
    for _ in range(FRESH_ID_ATTEMPTS):
        try:
            make_run_folder(runs_dir / run_id, exclusive=True)
            return run_id
        except FileExistsError:
            if fresh_id is None:
                raise _used_folder(runs_dir / run_id, flag) from None
            logger.info("run folder %s was taken a moment ago by another run: trying a fresh run id", runs_dir / run_id)
            run_id = fresh_id()
    raise FileExistsError(
        f"{FRESH_ID_ATTEMPTS} generated run ids in a row were taken under {runs_dir}: give one with {flag}"
    )


def remove_unfinished_run(run_dir: Path) -> None:
    """Remove the folder of a run that ended before its tasks were done, unless ``make train`` saved checkpoints in
    it: they are there to continue from (--resume), after a Ctrl+C above all."""
    checkpoints = sorted((run_dir / "checkpoints").glob("*.zip"), key=lambda path: path.stat().st_mtime)
    if checkpoints:
        # Without the same --fold, a resumed run trains on the latest fold: a checkpoint of a later fold resumed on an
        # earlier one has trained on that fold's test sessions.
        logger.warning("the run's checkpoints stay in %s: continue from the latest with the same --fold and --resume %s",
                       checkpoints[-1].parent, checkpoints[-1])  # fmt: skip
        return
    shutil.rmtree(run_dir, ignore_errors=True)
