import sys

from seqgap.cli import main

sys.exit(main())
