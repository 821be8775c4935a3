"""ImageService: one coroutine per implemented RPC, named as in the proto.

Every ImageService RPC answers UNIMPLEMENTED until the image issue lands.
"""

from __future__ import annotations

from crib.cri_server.config import Config
from crib.store.state_store import StateStore


class ImageServicer:
    def __init__(self, config: Config, store: StateStore) -> None:
        self.config = config
        self.store = store
