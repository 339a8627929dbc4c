"""``python -m stress.worker``: a worker process's entry point."""

import sys

from stress.worker.main import main

sys.exit(main())
