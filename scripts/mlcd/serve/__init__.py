"""The model server that runs inside the serving image (`mlcd serve`, docs/serving.md).

It is built for speed on small machines: an asyncio server (uvloop + httptools) per CPU
core sharing one port (SO_REUSEPORT), and inside each process adaptive micro-batching:
concurrent requests are coalesced into one `predict` call, run in a single inference
thread so the event loop stays free. Metrics and the recent-predictions buffer live in
shared memory so that every process answers for all of them.

Modules: `settings` (environment and options), `model` (loading and predicting),
`schema` (request validation), `metrics` (Prometheus and the recent buffer), `app`
(routes, no sockets), `server` (HTTP, batching, worker processes, graceful shutdown).
This package imports neither pydantic nor pandas, so the image carries neither.
"""
