"""Image records: what is on the node, under which names, answered from memory.

An image is identified by its config digest (the CRI image ID). It carries
the names it was pulled or loaded under: tags (`name:tag`) and repo digests
(`name@sha256:…` of the manifest or index the name resolved to). A tag names
one image at a time; pulling it again moves it. Records are persisted in the
state store; each image's config is re-read from the content store at start.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from crib.errors import InvalidArgument
from crib.image_service import reference
from crib.image_service.content_store import ContentStore
from crib.image_service.manifest import load_json
from crib.log_setup import get_logger
from crib.store.state_store import StateStore

log = get_logger("crib.images")

_KIND = "image"
# Removed images whose content a container still uses: no names, not listed.
_RETAINED_KIND = "image_retained"
_HEX = re.compile(r"[0-9a-f]+")
# An ID prefix shorter than this is too likely to be meant as a name.
MIN_ID_PREFIX = 4


@dataclass(frozen=True)
class LayerRef:
    digest: str
    media_type: str
    size: int
    diff_id: str
    chain_id: str


@dataclass
class ImageRecord:
    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    manifest_digest: str
    layers: list[LayerRef]
    # Other blobs to keep with the image: its manifest, and indexes it was
    # resolved through.
    blobs: list[str]
    size: int
    config: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def chain_id(self) -> str:
        return self.layers[-1].chain_id if self.layers else ""

    def all_blobs(self) -> set[str]:
        return {self.id, self.manifest_digest, *self.blobs, *(layer.digest for layer in self.layers)}

    def to_record(self) -> dict[str, Any]:
        data = asdict(self)
        del data["config"]
        return data

    @classmethod
    def from_record(cls, data: dict[str, Any], config: dict[str, Any]) -> ImageRecord:
        layers = [LayerRef(**layer) for layer in data.pop("layers")]
        return cls(layers=layers, config=config, **data)

    @property
    def user(self) -> str:
        cfg = self.config.get("config") or {}
        user = cfg.get("User", "") if isinstance(cfg, dict) else ""
        return user if isinstance(user, str) else ""


# Names looked up often (the kubelet's ImageStatus before each container start names the
# image as the pod spec does) are parsed once; a longer text is no name and is not kept.
_KEYS_KEPT = 1024
_KEPT_TEXT_MAX = 512


def _ref_key(text: str) -> str | None:
    """The canonical name form of a reference, or None if `text` is not one."""
    return _kept_ref_key(text) if len(text) <= _KEPT_TEXT_MAX else _parse_ref_key(text)


@functools.lru_cache(maxsize=_KEYS_KEPT)
def _kept_ref_key(text: str) -> str | None:
    return _parse_ref_key(text)


def _parse_ref_key(text: str) -> str | None:
    try:
        ref = reference.parse(text, default_tag=True)
    except InvalidArgument:
        return None
    return str(ref.with_digest(ref.digest)) if ref.digest else str(ref)


class ImageStore:
    def __init__(self, store: StateStore, content: ContentStore) -> None:
        self.store = store
        self.content = content
        self.by_id: dict[str, ImageRecord] = {}
        self.by_ref: dict[str, str] = {}
        self.retained: dict[str, ImageRecord] = {}
        self._load()

    def _load(self) -> None:
        for kind, target in ((_KIND, self.by_id), (_RETAINED_KIND, self.retained)):
            for image_id, raw in self.store.items(kind):
                try:
                    config = load_json(self.content.read(image_id), f"config of image {image_id}")
                except (OSError, InvalidArgument) as exc:
                    log.warning("image.dropped", image=image_id, reason=str(exc))
                    self.store.delete(kind, image_id)
                    continue
                target[image_id] = ImageRecord.from_record(raw, config)
        for record in self.by_id.values():
            for ref in (*record.repo_tags, *record.repo_digests):
                self.by_ref[ref] = record.id

    def images(self) -> list[ImageRecord]:
        return list(self.by_id.values())

    def resolve(self, spec: str) -> ImageRecord | None:
        """An image by ID (`sha256:…`, bare hex, or a unique hex prefix), tag or digest reference."""
        if not spec:
            return None
        image_id = spec if spec.startswith("sha256:") else f"sha256:{spec}"
        if image_id in self.by_id:
            return self.by_id[image_id]
        key = _ref_key(spec)
        if key is not None and key in self.by_ref:
            return self.by_id[self.by_ref[key]]
        bare = spec.removeprefix("sha256:")
        if len(bare) >= MIN_ID_PREFIX and _HEX.fullmatch(bare):
            matches = [r for i, r in self.by_id.items() if i[7:].startswith(bare)]
            if len(matches) == 1:
                return matches[0]
        return None

    def add(self, new: ImageRecord) -> ImageRecord:
        """Record an image under its names, moving tags that named other images."""
        with self.store.transaction():
            if self.retained.pop(new.id, None) is not None:
                self.store.delete(_RETAINED_KIND, new.id)
            record = self.by_id.get(new.id)
            if record is None:
                record = new
                self.by_id[new.id] = record
                new_names = [*new.repo_tags, *new.repo_digests]
                record.repo_tags, record.repo_digests = [], []
            else:
                new_names = [*new.repo_tags, *new.repo_digests]
                record.blobs = sorted(set(record.blobs) | set(new.blobs))
            for name in new_names:
                self._attach(record, name)
            self.store.put(_KIND, record.id, record.to_record())
        return record

    def _attach(self, record: ImageRecord, name: str) -> None:
        previous = self.by_ref.get(name)
        if previous == record.id:
            return
        if previous is not None:
            old = self.by_id[previous]
            self._detach(old, name)
            self.store.put(_KIND, old.id, old.to_record())
        self.by_ref[name] = record.id
        target = record.repo_digests if "@" in name else record.repo_tags
        target.append(name)
        target.sort()

    def _detach(self, record: ImageRecord, name: str) -> None:
        self.by_ref.pop(name, None)
        for names in (record.repo_tags, record.repo_digests):
            if name in names:
                names.remove(name)

    def remove(self, record: ImageRecord, retain: bool = False) -> None:
        """Drop the image and all its names; `retain` keeps its content for running containers."""
        with self.store.transaction():
            for name in (*record.repo_tags, *record.repo_digests):
                if self.by_ref.get(name) == record.id:
                    del self.by_ref[name]
            self.by_id.pop(record.id, None)
            self.store.delete(_KIND, record.id)
            if retain:
                self.retained[record.id] = record
                self.store.put(_RETAINED_KIND, record.id, record.to_record())

    def release_retained(self, keep: set[str]) -> None:
        """Forget removed images no container uses any more (their content is collected next)."""
        for image_id in [i for i in self.retained if i not in keep]:
            del self.retained[image_id]
            self.store.delete(_RETAINED_KIND, image_id)
