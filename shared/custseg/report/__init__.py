"""Stage 6, the report: the HTML page and its charts."""
