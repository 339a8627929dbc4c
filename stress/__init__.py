"""mnn-stress: a multiprocess stress-test harness for MNN's Python APIs.

Kept import-free on purpose: worker processes import ``stress.worker`` under interpreters
that may have only MNN and numpy installed.
"""

import os

__version__ = "0.1.0"

# The folder holding the ``stress`` package: a subprocess under another interpreter (a worker
# in a cached MNN environment, the model probe) finds mnn-stress's code through PYTHONPATH.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
