import sys

from flowsentinel.cli import main

sys.exit(main())
