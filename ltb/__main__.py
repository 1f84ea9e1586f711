import sys

from ltb.cli import main

sys.exit(main())
