"""Run lifecycle of the gateway: runs, bridge, stores, worker. Knows nothing of HTTP."""
