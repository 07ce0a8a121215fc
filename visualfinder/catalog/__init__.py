"""The catalog: the library's SQLite database, its schema and migrations, and every SQL statement
on its tables. The source of truth for images, metadata, vectors and the sync outbox."""
