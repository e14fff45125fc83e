"""Control channel: cancel signals and wake-ups between gateway processes. The Protocol
(protocol.py); in process (local.py); across processes (remote.py: what the transports share)
over Redis pub/sub (redis.py) or PostgreSQL LISTEN/NOTIFY (pg_notify.py); split.py: cancels on
one, wake-ups on another (the scale-out composition: Redis cancels, PostgreSQL wake-ups)."""
