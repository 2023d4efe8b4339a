"""`python -m watchword`: the same command as `watchword`."""

import sys

from watchword.cli import main

sys.exit(main())
