"""Client scripts the benchmarks run (their own modules file: ``modules.ini``)."""
