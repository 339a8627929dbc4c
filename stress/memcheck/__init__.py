"""valgrind memcheck for workers: the suppressions we keep, and reading its reports."""
