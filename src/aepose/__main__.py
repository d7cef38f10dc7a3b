"""``python -m aepose`` (also what ``torchrun -m aepose`` runs)."""

import sys

from aepose.apps.cli import main

sys.exit(main())
