import sys

from coopbot.cli import main

sys.exit(main())
