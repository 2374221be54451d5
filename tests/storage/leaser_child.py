"""A child process for the multi-process lease test: leases from one PostgreSQL schema with short leases,
acks some of what it got and lets the rest expire, until the queue is empty. It prints one JSON line per
lease (`lease`, `at` = the `now` it leased with, `until`, `ids`) and per ack (`lease`, `acked`).

Usage: python -m tests.storage.leaser_child STORAGE_URL PROVIDER_BIN START_AT_EPOCH SEED
"""

from __future__ import annotations

import json
import random
import sys
import time
from datetime import UTC, datetime

from gateway.storage import open_storage

LEASE_SECONDS = 0.3


def main(url: str, provider_bin: str, start_at: float, seed: int) -> None:
    storage = open_storage(url, pool_size=2)
    rnd = random.Random(seed)
    time.sleep(max(0.0, start_at - time.time()))  # both children begin together
    while True:
        now = datetime.now(UTC)
        lease = storage.lease(provider_bin, rnd.randint(1, 8), LEASE_SECONDS, now)
        ids = [a.id for a in lease.applications]
        print(json.dumps({"lease": lease.lease_id, "at": now.timestamp(), "until": lease.expires_at.timestamp(),
                          "ids": ids}), flush=True)
        if not ids:
            if storage.queue_depth(provider_bin) == 0:
                break
            time.sleep(0.02)
            continue
        keep = [i for i in ids if rnd.random() < 0.6]  # the rest is left to expire and be leased again
        if keep:
            acked = storage.ack(provider_bin, lease.lease_id, keep, datetime.now(UTC))
            print(json.dumps({"lease": lease.lease_id, "acked": acked}), flush=True)
    storage.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
