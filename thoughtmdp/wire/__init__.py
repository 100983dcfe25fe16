"""The wire format between actors and the learner (see :mod:`thoughtmdp.wire.frames`).

A message is ``[kind byte, msgpack header, *raw array frames]``; never pickle.

>>> from thoughtmdp.types import Episode
>>> decode(encode_episode(Episode("train/0", ()))).problem_id
'train/0'
"""

from thoughtmdp.wire.chunks import (
    CHUNK_BYTES,
    Chunk,
    ChunkRequest,
    encode_chunk,
    encode_chunk_request,
)
from thoughtmdp.wire.control import (
    ADAPTER_FILES,
    ADAPTER_WEIGHTS,
    AdapterNotice,
    Credit,
    Hello,
    Message,
    decode,
    encode_adapter,
    encode_credit,
    encode_hello,
    sha256_of,
)
from thoughtmdp.wire.episode import decode_episode, encode_episode
from thoughtmdp.wire.frames import KINDS, MAX_MESSAGE_BYTES, SCHEMA_VERSION, Frames, WireError

__all__ = [
    "ADAPTER_FILES",
    "ADAPTER_WEIGHTS",
    "CHUNK_BYTES",
    "KINDS",
    "MAX_MESSAGE_BYTES",
    "SCHEMA_VERSION",
    "AdapterNotice",
    "Chunk",
    "ChunkRequest",
    "Credit",
    "Frames",
    "Hello",
    "Message",
    "WireError",
    "decode",
    "decode_episode",
    "encode_adapter",
    "encode_chunk",
    "encode_chunk_request",
    "encode_credit",
    "encode_episode",
    "encode_hello",
    "sha256_of",
]
