"""The only code that runs inside a worker process (``python -m stress.worker``): the main
loop (``main``), the API drivers, seeded inputs, and the test-only faults and trace. Imports
only the stdlib, numpy, MNN and ``stress.contract`` / ``stress.factors``."""
