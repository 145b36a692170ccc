import sys

from lofi.cli import main

sys.exit(main())
