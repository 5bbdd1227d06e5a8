"""Health over time: the score history, alerts on it, and monitoring of drift and realised churn.

``history`` (the store: one Parquet file per scoring date and model, queried with DuckDB) ->
``alerts`` (rules from the card, fired on entry into a condition, with drivers, owner and playbook;
an optional webhook) -> ``drift`` (PSI against the training reference, missing shares, new
categories, realised churn and calibration once labels have matured, a verdict) -> ``trends`` (what
the report shows over time).
"""
