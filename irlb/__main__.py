"""``python -m irlb``: the ``irlb`` command (what ``accelerate launch -m irlb`` and ``torchrun -m irlb`` run)."""

import sys

from irlb.main import main

sys.exit(main())
