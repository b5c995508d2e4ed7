"""``python -m nii``: the ``nii`` command without the console script (e.g. on a machine where the
package is on ``PYTHONPATH`` but not installed)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
