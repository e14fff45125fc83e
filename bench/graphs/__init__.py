"""The benchmark graphs, served by both servers from the same files (see bench/config.yaml and
bench/reference/langgraph.json) and imported in-process for the physical limits."""
