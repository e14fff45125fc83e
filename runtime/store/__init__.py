"""RunStore and ThreadStore: the Protocols (protocol.py) and their implementations (sqlite.py)."""
