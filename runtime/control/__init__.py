"""Control channel: cancel signals and wake-ups between gateway processes (protocol.py), in
process (local.py), over Redis pub/sub (redis.py) or PostgreSQL LISTEN/NOTIFY (pg_notify.py)."""
