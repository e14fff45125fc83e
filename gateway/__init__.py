"""HTTP edge of the run gateway: Starlette routes, SSE, request models, settings, errors."""
