"""``python -m stress.worker [VARIANT WORKER]``: a worker process's entry point. The job comes
on stdin; the arguments only label the process for ``ps``."""

import sys

from stress.worker.main import main

sys.exit(main())
