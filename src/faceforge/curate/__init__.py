"""Dataset curation: per-identity graph filtering of labelled faces (more to come: global
clustering of unlabelled faces, metrics, review reports)."""
