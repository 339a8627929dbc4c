"""One run, start to end, on the coordinator's side of the process boundary."""
