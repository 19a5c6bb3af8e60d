"""The leak finder the password tests rely on: it must see a password however a URL or a file carries it."""

from __future__ import annotations

import zipfile
from pathlib import Path

from devtools.leaks import files_with_fragments, leaked_fragments

SECRET = "Tn#r /Pw?x@3 'q\"%zz"


def test_a_percent_encoded_password_is_a_leak_too():
    """A URL rendered for a library (SQLAlchemy, Great Expectations) carries the password percent-encoded: none of
    its raw pieces is left, and the finder looked only for those."""
    url = "postgresql+psycopg://trainer_app:Tn%23r%20%2FPw%3Fx%403%20%27q%22%25zz@127.0.0.1:5432/research"
    assert leaked_fragments(url, [SECRET])
    assert leaked_fragments("login=trainer_app&password=Tn%23r+%2FPw%3Fx%403+%27q%22%25zz", [SECRET])
    # Encoded pieces made only of '%' and hex digits are in any encoded text: they are no evidence.
    assert not leaked_fragments("select%20%2F%20%27a%22%25", [SECRET])
    # ...nor are those with a '+' (a space, encoded): a timestamp holds them by chance ('x@3 ' encoded: 'x%403+').
    assert not leaked_fragments("ingested_at 2026-12-01 04:38:33.403+00, 8.1e+03", [SECRET])
    assert not leaked_fragments("PostgreSQL trainer_app@127.0.0.1:5432/research", [SECRET])


def test_files_are_searched_archives_included_and_embedded_images_and_tensors_left_out(tmp_path: Path):
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "runs" / "r1" / "run.log").write_text("connected\n", encoding="utf-8")
    # A report embeds images in base64: its letters, digits and '/' make pieces such as 'l/5t' by chance.
    (tmp_path / "runs" / "r1" / "report.html").write_text('<img src="data:image/png;base64,iVBORw0KGgol/5tAAAA=">')
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:trainer_app:{SECRET}\n", encoding="utf-8")
    assert files_with_fragments(tmp_path, ["An#l/5t?Pw@4", SECRET], skip=[passfile]) == {}

    with zipfile.ZipFile(tmp_path / "runs" / "r1" / "model.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data", f'{{"dsn": "{SECRET}"}}')
        archive.writestr("policy.optimizer.pth", b"\x00%27q\x00")  # tensors' bytes: a piece by chance
    (tmp_path / "runs" / "r1" / "run.log").write_text(f"password {SECRET[:4]}\n", encoding="utf-8")
    found = files_with_fragments(tmp_path, [SECRET], skip=[passfile])
    assert set(found) == {"runs/r1/run.log", "runs/r1/model.zip:data"}, found
    assert set(files_with_fragments(tmp_path, [SECRET])) == {"pgpass", "runs/r1/run.log", "runs/r1/model.zip:data"}
