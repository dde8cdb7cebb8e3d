"""The fencer's etcd: every endpoint asked at once, the first answer wins.

A quorum read through one endpoint blocks when that member is cut off, or when it is a
follower whose leader is cut off (until the election, ~1 s): exactly the members a
partition takes away. The fencer asks all of them in parallel and releases the key
through the one that answered first; each keeps its own connection between fences.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from pgha_operator.core.errors import OperatorError
from pgha_operator.shell.clients import Clients, EtcdApi

# Seconds a read may take. Waiting past an etcd election (2.5 s) was measured: when the
# cut-off machine held the etcd leader, the reads still failed and every such fence came
# 1.5 s later than with 1 s and the fencer's next decision (docs/drill.md).
TIMEOUT = 1.0


class FirstAnswering:
    def __init__(self, clients: Clients, urls: Sequence[str], timeout: float = TIMEOUT) -> None:
        self.urls = tuple(urls)
        self._clients = [clients.etcd([u], timeout=timeout) for u in self.urls]
        self.answered: EtcdApi = self._clients[0]  # the one that answered last

    def get(self, key: str) -> tuple[str | None, bool]:
        """(value, quorum): a successful read proves a quorum answered; (None, False) when
        no endpoint did."""
        pool = ThreadPoolExecutor(max_workers=len(self._clients))
        pending = {pool.submit(c.get, key): c for c in self._clients}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    client = pending.pop(future)
                    try:
                        value = future.result()
                    except OperatorError:
                        continue
                    self.answered = client
                    return value, True
            return None, False
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # never wait for a cut-off one
