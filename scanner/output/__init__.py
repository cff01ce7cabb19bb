"""Tables out: one row per file (``rows``), committed parts and the final table (``writer``),
and the embedding cache ``scanner train`` reads (``cache``)."""
