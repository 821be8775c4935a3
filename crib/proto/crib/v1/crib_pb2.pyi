from crib.proto.cri import api_pb2 as _api_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LayerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LAYER_STATE_UNSPECIFIED: _ClassVar[LayerState]
    LAYER_STATE_WAITING: _ClassVar[LayerState]
    LAYER_STATE_DOWNLOADING: _ClassVar[LayerState]
    LAYER_STATE_VERIFYING: _ClassVar[LayerState]
    LAYER_STATE_EXTRACTING: _ClassVar[LayerState]
    LAYER_STATE_DONE: _ClassVar[LayerState]
    LAYER_STATE_ALREADY_PRESENT: _ClassVar[LayerState]
LAYER_STATE_UNSPECIFIED: LayerState
LAYER_STATE_WAITING: LayerState
LAYER_STATE_DOWNLOADING: LayerState
LAYER_STATE_VERIFYING: LayerState
LAYER_STATE_EXTRACTING: LayerState
LAYER_STATE_DONE: LayerState
LAYER_STATE_ALREADY_PRESENT: LayerState

class LoadImageRequest(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class LoadedImage(_message.Message):
    __slots__ = ("id", "repo_tags", "repo_digests")
    ID_FIELD_NUMBER: _ClassVar[int]
    REPO_TAGS_FIELD_NUMBER: _ClassVar[int]
    REPO_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    repo_tags: _containers.RepeatedScalarFieldContainer[str]
    repo_digests: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., repo_tags: _Optional[_Iterable[str]] = ..., repo_digests: _Optional[_Iterable[str]] = ...) -> None: ...

class LoadImageResponse(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[LoadedImage]
    def __init__(self, images: _Optional[_Iterable[_Union[LoadedImage, _Mapping]]] = ...) -> None: ...

class ImportConfig(_message.Message):
    __slots__ = ("entrypoint", "cmd", "env", "working_dir", "user", "exposed_ports", "stop_signal", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    CMD_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    EXPOSED_PORTS_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    entrypoint: _containers.RepeatedScalarFieldContainer[str]
    cmd: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedScalarFieldContainer[str]
    working_dir: str
    user: str
    exposed_ports: _containers.RepeatedScalarFieldContainer[str]
    stop_signal: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, entrypoint: _Optional[_Iterable[str]] = ..., cmd: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[str]] = ..., working_dir: _Optional[str] = ..., user: _Optional[str] = ..., exposed_ports: _Optional[_Iterable[str]] = ..., stop_signal: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ImportImageRequest(_message.Message):
    __slots__ = ("name", "config", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: ImportConfig
    data: bytes
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[ImportConfig, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImportImageResponse(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: LoadedImage
    def __init__(self, image: _Optional[_Union[LoadedImage, _Mapping]] = ...) -> None: ...

class PullImageWithProgressRequest(_message.Message):
    __slots__ = ("image", "auth", "sandbox_config")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_CONFIG_FIELD_NUMBER: _ClassVar[int]
    image: _api_pb2.ImageSpec
    auth: _api_pb2.AuthConfig
    sandbox_config: _api_pb2.PodSandboxConfig
    def __init__(self, image: _Optional[_Union[_api_pb2.ImageSpec, _Mapping]] = ..., auth: _Optional[_Union[_api_pb2.AuthConfig, _Mapping]] = ..., sandbox_config: _Optional[_Union[_api_pb2.PodSandboxConfig, _Mapping]] = ...) -> None: ...

class LayerProgress(_message.Message):
    __slots__ = ("digest", "size", "bytes_done", "state")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    digest: str
    size: int
    bytes_done: int
    state: LayerState
    def __init__(self, digest: _Optional[str] = ..., size: _Optional[int] = ..., bytes_done: _Optional[int] = ..., state: _Optional[_Union[LayerState, str]] = ...) -> None: ...

class PullProgress(_message.Message):
    __slots__ = ("reference", "resolved", "manifest_digest", "registry", "layers", "bytes_done", "bytes_total", "image_ref")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_REF_FIELD_NUMBER: _ClassVar[int]
    reference: str
    resolved: str
    manifest_digest: str
    registry: str
    layers: _containers.RepeatedCompositeFieldContainer[LayerProgress]
    bytes_done: int
    bytes_total: int
    image_ref: str
    def __init__(self, reference: _Optional[str] = ..., resolved: _Optional[str] = ..., manifest_digest: _Optional[str] = ..., registry: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[LayerProgress, _Mapping]]] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., image_ref: _Optional[str] = ...) -> None: ...
