"""mnn-stress: a multiprocess stress-test harness for MNN's Python APIs.

Kept import-free on purpose: worker processes import ``stress.worker`` under interpreters
that may have only MNN and numpy installed.
"""

__version__ = "0.1.0"
