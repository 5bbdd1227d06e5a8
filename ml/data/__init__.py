"""Tables in and out: reading and writing CSV/Parquet atomically, and the synthetic data generator."""
