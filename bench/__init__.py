"""The benchmark: our gateway vs the reference server (``langgraph dev``) vs the physical limits.

Run it with ``make bench`` (or ``.venv/bin/python -m bench [--quick] [--no-reference]``).
Modules, one concept each:

* ``__main__``  the command line and the order of the run;
* ``budget``    how long / how many samples each scenario gets (full and ``--quick``);
* ``servers``   server processes (gateway, reference, bare app), free ports, RSS;
* ``reference`` installs ``langgraph-cli[inmem]`` into ``bench/.venv-ref`` when asked;
* ``client``    the raw httpx client, SSE frame counting, closed-loop load, percentiles;
* ``runs``      scenarios 1-3 (``/runs/wait``, ``/runs/stream`` first event, SSE rate);
* ``streams``   scenarios 4-5 (fan-out to joiners, idle open streams and RSS);
* ``growth``    scenario 6 (latency with 1k vs 10k stored threads);
* ``limits``    the physical limits (in-process ``ainvoke``/``astream``, bare Starlette);
* ``bare_app``  the bare Starlette + sse-starlette app the limits measure;
* ``report``    the table, the issue-6 targets, the JSON file;
* ``profile``   a py-spy / cProfile profile of the gateway under one load (not run by default).
"""
