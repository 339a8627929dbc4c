"""One worker process seen from outside: its handle, how it ended, its stacks, logs and cgroup."""
