"""Finding images: the vector index (USearch HNSW), the search planner (exact or approximate),
the query bar's language, and duplicate detection."""
