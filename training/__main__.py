"""``python -m training``: what ``make train`` runs (``python -m training.walk_forward`` runs every fold x seed)."""

import sys

from training.cli import main

if __name__ == "__main__":
    sys.exit(main())
