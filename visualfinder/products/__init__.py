"""Product data: the metadata fields, importing product sheets and sidecar files, and the CSV
exporter."""
