"""``python -m faceprior``: the command line (also what ``torchrun -m faceprior`` runs)."""
import sys

from faceprior.cli import main

sys.exit(main())
