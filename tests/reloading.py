"""An SMTP server that serves whatever a renewal deploys: a loopback STARTTLS server that loads
the deployed key and full chain whenever the files change (what a deploy hook reloading Postfix
does), for renewal tests that need the verification to pass."""

from __future__ import annotations

import threading
from pathlib import Path

from monitor.demo.servers import LoopbackSMTP, free_port


class ReloadingServer:
    def __init__(self, key: Path, chain: Path, deployed: Path) -> None:
        self.port = free_port()
        self.deployed = deployed
        self.server = LoopbackSMTP("starttls", key, chain, port=self.port).start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        seen = None
        while not self._stop.wait(0.05):
            chain = self.deployed / "fullchain.pem"
            if not chain.exists() or chain.stat().st_mtime == seen:
                continue
            seen = chain.stat().st_mtime
            # reloaded in place: a restart would abandon a verification probe in flight
            self.server.serve(self.deployed / "privkey.pem", chain)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.server.stop()
