"""Scale runs of the pipeline against a bare DuckDB floor: ``python -m benchmarks.run``."""
