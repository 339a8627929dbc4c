"""What a run leaves on disk: the Parquet schemas, the run directory, parts, compaction,
journal and manifest."""
