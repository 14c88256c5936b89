"""`python -m flow_manager`: the same command line as `flow-manager`."""

import sys

from flow_manager.cli import main

sys.exit(main())
