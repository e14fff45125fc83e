"""``gateway serve [--config PATH] [--host H] [--port P]``: run the server with uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from contextlib import ExitStack
from types import FrameType

import psycopg
import uvicorn

from gateway.app import begin_shutdown, create_app
from gateway.settings import SettingsError, load_settings
from runtime.datadir import (
    DatabaseLocked,
    DataDirLocked,
    exclusive_data_dir,
    exclusive_database,
)
from runtime.graphs import GraphLoadError, locate_spec
from runtime.logctx import ContextFilter


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gateway`` console command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the configured graphs over HTTP")
    serve.add_argument("--config", default="config.yaml",
                       help="config.yaml or langgraph.json (default: ./config.yaml)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s%(ids)s")
    for handler in logging.getLogger().handlers:  # run_id/thread_id/cron_id on each line
        handler.addFilter(ContextFilter())
    try:
        settings = load_settings(args.config, host=args.host, port=args.port)
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    for graph_id, spec in settings.graphs.items():  # a typo fails here, not as a traceback
        try:
            locate_spec(spec, settings.base_dir)
        except GraphLoadError as exc:
            print(f"gateway: {args.config}: graphs.{graph_id}: {exc}", file=sys.stderr)
            return 2
    try:
        app = create_app(settings)
    except (GraphLoadError, SettingsError) as exc:  # auth.path: a bad Auth object
        print(f"gateway: {args.config}: auth: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(app, host=settings.host, port=settings.port,
                            log_level=args.log_level,
                            timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout_s)))
    server = GatewayServer(config, on_exit=lambda: begin_shutdown(app))
    runtime_config = settings.runtime_config()
    with ExitStack() as stack:
        try:  # held for the process's life, before any store is opened (runtime/datadir.py)
            if runtime_config.cluster:
                pass  # N processes share the database: runs are claimed and leased in it
            elif runtime_config.database_url:
                stack.enter_context(exclusive_database(runtime_config.database_url))
            elif runtime_config.data_dir is not None:
                stack.enter_context(exclusive_data_dir(runtime_config.data_dir))
        except (DataDirLocked, DatabaseLocked) as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return 2
        except psycopg.OperationalError as exc:
            print(f"gateway: database_url: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
            return 2
        except OSError as exc:  # the data dir cannot be created
            print(f"gateway: data_dir {runtime_config.data_dir}: {exc}", file=sys.stderr)
            return 2
        server.run()
    return 0  # a failed startup (e.g. a graph module raised) exits 3 inside uvicorn


class GatewayServer(uvicorn.Server):
    """uvicorn's server, telling the runtime to stop admitting runs as soon as a SIGTERM or
    Ctrl-C arrives (shutdown step 1), before uvicorn waits for open connections."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)


if __name__ == "__main__":
    sys.exit(main())
