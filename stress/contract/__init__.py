"""What the coordinator and the workers share: the job and record layout (``protocol``), the
shared-memory ring (``ring``), the dtype table (``dtypes``) and the stages a factor may take
part in (``stages``). Stdlib only: workers import it."""
