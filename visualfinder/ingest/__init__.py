"""Getting images in: scanning folders, reading and decoding files (and query URLs), the one
indexing pipeline with its decode pool, and the folder watcher."""
