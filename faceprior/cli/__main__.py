"""``python -m faceprior.cli``: the same as the ``faceprior`` command."""

import sys

from faceprior.cli import main

sys.exit(main())
