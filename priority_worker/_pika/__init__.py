"""pika's side of the link: everything that imports pika, kept apart as pika keeps its adapters.

``connection`` (``PikaLink``: the connection state machine, failover, TLS), ``channels`` (the
channel protocols of :mod:`priority_worker._link` on pika), ``wire`` (encoding shortcuts on
pika internals) and ``errors`` (the one pika exception map). Nothing outside this package
imports pika except ``_topology``'s startup check, which uses a blocking connection.
"""
