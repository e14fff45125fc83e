"""StreamBridge: the Protocol (protocol.py) and its implementations (memory.py, sqlite.py)."""
