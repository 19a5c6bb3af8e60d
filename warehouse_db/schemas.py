"""Schema and role names: the one place Python code takes them from.

dbt's schema names are configured in ``dbt_project.yml`` (staging, intermediate, marts);
``tests/test_warehouse_db.py`` checks that both agree.
"""

RAW = "raw"
"""Landing schema: exactly what a source sent, append-only, written by the loader."""
STAGING = "staging"
INTERMEDIATE = "intermediate"
MARTS = "marts"
"""Training-ready and analyst-facing tables built by dbt."""
ML = "ml"
"""Training runs, metrics and equity curves, written by the training job."""

LOADER_ROLE = "loader"
TRANSFORMER_ROLE = "transformer"
TRAINER_ROLE = "trainer"
ANALYST_ROLE = "analyst"

COMPONENT_ROLES = (LOADER_ROLE, TRANSFORMER_ROLE, TRAINER_ROLE, ANALYST_ROLE)
"""The NOLOGIN group roles, one per component; each may have its own login (a member of that role only)."""
