"""The HTTP side door of a bus (DESIGN §14): metrics, health, CloudEvents in, SSE out.

server.py   uvicorn on the bus's `http.listen`, in the bus's loop
app.py      the routes, the token, errors as HTTP answers
metrics.py  /metrics from the bus's counters at scrape time
ingest.py   POST /events: CloudEvents → Bus.submit
sse.py      GET /events: Bus.subscribe_sse → Server-Sent Events
"""

from eventbus_server.http.server import HttpServer

__all__ = ["HttpServer"]
