"""Reading runs back: everything here works from RUN_DIR alone (Parquet + manifest)."""
