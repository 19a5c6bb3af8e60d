"""The key to the local Ray a run starts stays with the user who runs it.

Whoever holds Ray's token may run code in the cluster's workers as that user, and a local Ray's workers inherit the
driver's environment: DATABASE_URL and the WAREHOUSE_*_PASSWORD variables, when the shell exports them. Ray wrote
the token it generates to ~/.ray/auth_token with the umask's mode (0644), readable by every local user wherever the
home directory may be entered (0755, long Debian's and Ubuntu's default).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ray")]  # starts a local Ray

START_AND_STOP_A_LOCAL_RAY = """
import ray
from training.task_runners import RayRunner
started, address = RayRunner(cpus=1, progress_bar=False)._connect()
assert started and address is None
ray.shutdown()
"""


def start_local_ray(home: Path) -> str:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RAY_") and name not in ("DATABASE_URL", "HOME")
    }
    result = subprocess.run(
        [sys.executable, "-c", START_AND_STOP_A_LOCAL_RAY],
        env={**env, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_token_a_local_ray_generates_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    start_local_ray(home)
    token = home / ".ray" / "auth_token"
    assert mode(token) == 0o600, f"{token} is {mode(token):o}"
    assert mode(token.parent) == 0o700
    assert len(token.read_text(encoding="utf-8").strip()) == 64  # Ray's own kind of token: 256 bits in hex


def test_a_token_others_may_read_is_made_private_and_kept(tmp_path: Path) -> None:
    """A token an earlier run (or `ray start`) left readable by others: the run takes their access away, says so,
    and uses the same token."""
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    token = home / ".ray" / "auth_token"
    token.write_text("a" * 64, encoding="utf-8")
    token.chmod(0o644)
    said = start_local_ray(home)
    assert mode(token) == 0o600
    assert token.read_text(encoding="utf-8") == "a" * 64
    assert f"{token} (the key to the Ray clusters started here) was readable by other users (mode 644)" in said, said
