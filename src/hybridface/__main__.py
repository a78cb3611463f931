"""``python -m hybridface`` runs the CLI."""

import sys

from hybridface.cli import main

sys.exit(main())
