"""Optional sync of the library to an OpenSearch k-NN index, and search on that index.

- `opensearch.py`  the cluster: connection, index mapping and checks, _bulk with retries
- `mapping.py`     the index body (knn_vector + metadata fields) and the compatibility check
- `documents.py`   catalog rows -> OpenSearch documents, packed into byte-sized _bulk bodies
- (the outbox itself, and the sync state, live in the catalog: `catalog/outbox.py`)
- `sync.py`        Syncer: outbox -> _bulk, full re-push, SyncReport / SyncStatus
- `query.py`       remote k-NN search (knn query or exact script_score, as the local planner decides)
- `worker.py`      SyncWorker: pushes changes in the background (watcher, GUI)
- `credentials.py` the password in the OS keyring

Nothing here is imported by the local core unless sync or remote search is used.
"""
