"""The HTTP API (`visualfinder serve`): a FastAPI app over the same Library as the CLI and the app.

- `app.py`: the app factory (routers, error handlers, CORS, the body limit);
- `routes.py`: the endpoints, thin over `service.ApiService`;
- `service.py`: what the endpoints call: the Library (or `RemoteOnly`), the model gate, jobs;
- `schemas.py`: the request and response models (the contract, also in /openapi.json);
- `requests.py`: JSON and multipart bodies into a `SearchRequest`;
- `errors.py`, `auth.py`, `limits.py`, `gate.py`, `jobs.py`: one concern each;
- `server.py`: uvicorn's lifecycle: open, watch, serve, finish in-flight requests, close.
"""
