"""A child process for the crash test: stores applications from several threads, the way the gateway's
intake does (`store_application`), and prints `<registration_number> <id>` for each one as soon as the
call returned, i.e. as soon as the write was acknowledged. The test SIGKILLs it mid-stream.

Usage: python -m tests.storage.writer_child STORAGE_URL THREADS
"""

from __future__ import annotations

import itertools
import sys
import threading

from gateway.storage import open_storage
from tests.storage.factory import new_application, receipt_for


def main(url: str, threads: int) -> None:
    storage = open_storage(url, pool_size=threads)
    storage.migrate()
    counter = itertools.count()
    out_lock = threading.Lock()
    print("ready", flush=True)

    def write() -> None:
        while True:
            n = next(counter)
            record = storage.store_application(new_application(n, documents=1), receipt_for)
            with out_lock:
                sys.stdout.write(f"{record.registration_number} {record.id}\n")
                sys.stdout.flush()

    workers = [threading.Thread(target=write, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
