"""`python -m kiln` is the `kiln` command (for a checkout without the console script)."""
import sys

from kiln.cli import main

sys.exit(main())
