"""Stage 1, ingest: read an upload, validate and clean it against its data contract."""
