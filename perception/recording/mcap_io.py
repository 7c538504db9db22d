"""MCAP files of a drive: a writer that survives being killed, and a reader of what survived.

The writer is the ``mcap`` package's, given an unbuffered file: every finished chunk reaches the
kernel the moment it is written, and a chunk is closed at least every ``flush_period_s``, so a
recorder killed by SIGKILL (or stopped by a full disk) leaves a file that holds every message up to
its last complete chunk. The summary and index are written by :meth:`RecordingWriter.close`.

The reader scans the file record by record and checks each chunk's CRC, so it reads complete files
and cut ones alike: a cut or corrupt tail ends the scan (``complete`` is then False and
``stop_reason`` says where and why) instead of raising. Anything that is not MCAP is one
:class:`~perception.errors.UserError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcap.decoder import DecoderFactory as McapDecoderFactory
from mcap.reader import SeekingReader
from mcap.records import Channel, Chunk, Footer, Message, Metadata, Schema
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap.writer import CompressionType, Writer

from perception.bus.codec import Limits, decode
from perception.bus.endpoints import split_key
from perception.bus.topics import get_topic
from perception.errors import UserError
from perception.msgs import Message as BusMessage
from perception.recording.lossless import (
    FORMAT_VERSION,
    MESSAGE_ENCODING,
    SCHEMA_ENCODING,
    pack_frames,
    schema_json,
    schema_name,
    unpack_frames,
)

MCAP_MAGIC = b"\x89MCAP0\r\n"
LIBRARY = "perception-recorder"
COMPRESSIONS = {
    "zstd": CompressionType.ZSTD,
    "lz4": CompressionType.LZ4,
    "none": CompressionType.NONE,
}


class RecordingWriteError(UserError):
    """Writing failed (disk full, file too large, I/O error); the file is readable up to its last
    complete chunk."""


# -- channels ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelSpec:
    """What a channel is: written once per file, before its first message."""

    topic: str
    message_encoding: str
    schema_name: str
    schema_encoding: str
    schema_data: bytes
    metadata: tuple[tuple[str, str], ...] = ()


_LOSSLESS_SPECS: dict[str, ChannelSpec] = {}


def lossless_channel(key: str) -> ChannelSpec:
    """The lossless channel of bus channel ``key`` (``topic`` or ``topic@instance``)."""
    spec = _LOSSLESS_SPECS.get(key)
    if spec is None:
        topic, instance = split_key(key)
        msg_type = get_topic(topic).type
        spec = ChannelSpec(
            topic=key,
            message_encoding=MESSAGE_ENCODING,
            schema_name=schema_name(msg_type),
            schema_encoding=SCHEMA_ENCODING,
            schema_data=schema_json(msg_type, topic),
            metadata=(
                ("bus_topic", topic),
                ("instance", instance or ""),
                ("message_type", msg_type.TYPE),
                ("format_version", str(FORMAT_VERSION)),
            ),
        )
        _LOSSLESS_SPECS[key] = spec
    return spec


# -- writing ----------------------------------------------------------------------------------
class _DirectFile:
    """An unbuffered output file: what the MCAP writer hands over goes straight to the kernel,
    so a killed process loses nothing it had finished writing."""

    def __init__(self, path: Path, overwrite: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            self._fd = os.open(path, flags, 0o644)
        except FileExistsError:
            raise UserError(f"{path} exists; choose another name or overwrite it") from None
        except OSError as exc:
            raise UserError(f"cannot create {path}: {exc.strerror}") from None
        self.offset = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        total = view.nbytes
        while view.nbytes:
            n = os.write(self._fd, view)
            self.offset += n
            view = view[n:]
        return total

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        """Nothing is buffered here."""

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class WriterOptions:
    chunk_size_bytes: int = 4 << 20  # a chunk closes when it holds this much (uncompressed)
    compression: str = "zstd"  # zstd | lz4 | none
    flush_period_s: float = 1.0  # ...and at least this often: what a SIGKILL can lose
    split_size_bytes: int = 0  # start a new file once the current one reached this; 0: never
    split_duration_s: float = 0.0  # start a new file after this much log time; 0: never
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise UserError(
                f"compression must be one of {', '.join(COMPRESSIONS)}, not {self.compression!r}"
            )
        if self.chunk_size_bytes <= 0 or self.flush_period_s <= 0:
            raise UserError("chunk size and flush period must be positive")
        if self.split_size_bytes < 0 or self.split_duration_s < 0:
            raise UserError("split size and duration must be >= 0")


def output_path(path: str | Path) -> Path:
    """``path`` with the ``.mcap`` suffix added when it has none."""
    p = Path(path).expanduser()
    return p if p.suffix == ".mcap" else p.with_name(p.name + ".mcap")


class RecordingWriter:
    """Writes channels (lossless or view) to one MCAP file, or a series when splitting."""

    def __init__(
        self,
        output: str | Path,
        options: WriterOptions | None = None,
        metadata: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options or WriterOptions()
        self.output = output_path(output)
        self.metadata = {"format_version": str(FORMAT_VERSION), **(metadata or {})}
        self.files: list[Path] = []
        self.messages_written = 0
        self._clock = clock
        self._split = bool(self.options.split_size_bytes or self.options.split_duration_s)
        self._file: _DirectFile | None = None
        self._writer: Writer | None = None
        self._channels: dict[str, int] = {}
        self._schemas: dict[tuple[str, str, bytes], int] = {}
        self._first_log_ns: int | None = None
        self._pending = False
        self._last_flush = clock()
        self._broken = False
        if not self.output.parent.is_dir():
            self.output.parent.mkdir(parents=True, exist_ok=True)
        self._open_next()

    @property
    def path(self) -> Path:
        """The file being written now."""
        return self.files[-1]

    def _open_next(self) -> None:
        index = len(self.files)
        path = (
            self.output.with_name(f"{self.output.stem}_{index}{self.output.suffix}")
            if self._split
            else self.output
        )
        self._file = _DirectFile(path, self.options.overwrite)
        self.files.append(path)
        self._writer = Writer(
            self._file,  # type: ignore[arg-type]  # duck-typed stream: write/tell/flush
            chunk_size=self.options.chunk_size_bytes,
            compression=COMPRESSIONS[self.options.compression],
        )
        self._channels.clear()
        self._schemas.clear()
        self._first_log_ns = None
        self._guard(lambda w: w.start(profile="", library=LIBRARY))
        self._guard(lambda w: w.add_metadata("perception", {**self.metadata, "part": str(index)}))

    def _guard(self, op: Callable[[Writer], Any]) -> Any:
        """Run a writer operation; an OS error breaks the writer and becomes a clear error."""
        if self._broken or self._writer is None:
            raise RecordingWriteError(f"{self.path} can no longer be written")
        try:
            return op(self._writer)
        except OSError as exc:
            self._broken = True
            assert self._file is not None
            self._file.close()
            raise RecordingWriteError(
                f"cannot write {self.path}: {exc.strerror or exc}; the file is readable up to "
                "its last complete chunk"
            ) from None

    def _channel_id(self, spec: ChannelSpec) -> int:
        channel_id = self._channels.get(spec.topic)
        if channel_id is None:
            key = (spec.schema_name, spec.schema_encoding, spec.schema_data)
            schema_id = self._schemas.get(key)
            if schema_id is None:
                schema_id = self._guard(
                    lambda w: w.register_schema(
                        name=spec.schema_name, encoding=spec.schema_encoding, data=spec.schema_data
                    )
                )
                self._schemas[key] = schema_id
            channel_id = self._guard(
                lambda w: w.register_channel(
                    topic=spec.topic,
                    message_encoding=spec.message_encoding,
                    schema_id=schema_id,
                    metadata=dict(spec.metadata),
                )
            )
            self._channels[spec.topic] = channel_id
        return channel_id

    def write(
        self,
        spec: ChannelSpec,
        data: bytes,
        log_time_ns: int,
        publish_time_ns: int,
        sequence: int = 0,
    ) -> None:
        """Add one message; starts the next file first when a split limit was reached."""
        if self._split and self._first_log_ns is not None and self._limit_reached(log_time_ns):
            self._finish_file()
            self._open_next()
        channel_id = self._channel_id(spec)
        if self._first_log_ns is None:
            self._first_log_ns = log_time_ns
        self._guard(
            lambda w: w.add_message(
                channel_id=channel_id,
                log_time=log_time_ns,
                data=data,
                publish_time=publish_time_ns,
                sequence=sequence & 0xFFFFFFFF,
            )
        )
        self.messages_written += 1
        self._pending = True
        self.tick()

    def write_frames(
        self,
        key: str,
        frames: Sequence[Any],
        log_time_ns: int,
        publish_time_ns: int,
        sequence: int = 0,
    ) -> None:
        """Add a bus message's wire frames (header, buffers) to its lossless channel."""
        self.write(
            lossless_channel(key), pack_frames(frames), log_time_ns, publish_time_ns, sequence
        )

    def _limit_reached(self, log_time_ns: int) -> bool:
        o = self.options
        assert self._file is not None and self._first_log_ns is not None
        if o.split_size_bytes and self._file.offset >= o.split_size_bytes:
            return True
        return bool(
            o.split_duration_s and log_time_ns - self._first_log_ns >= o.split_duration_s * 1e9
        )

    def tick(self) -> None:
        """Close the open chunk when it is older than the flush period (call this when idle)."""
        now = self._clock()
        if self._pending and now - self._last_flush >= self.options.flush_period_s:
            self._guard(lambda w: w.flush())
            self._pending = False
            self._last_flush = now
        elif not self._pending:
            self._last_flush = now

    def _finish_file(self) -> None:
        self._guard(lambda w: w.finish())
        assert self._file is not None
        self._file.close()
        self._writer = None

    def close(self) -> list[Path]:
        """Write the summary and index and close; returns the files written. After a write
        error it only closes the file (which stays readable up to its last complete chunk)."""
        if self._writer is not None and not self._broken:
            with contextlib.suppress(RecordingWriteError):
                self._finish_file()
        if self._file is not None:
            self._file.close()
        self._writer = None
        return list(self.files)

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelInfo:
    id: int
    topic: str  # the MCAP topic: a bus channel key for lossless channels
    message_encoding: str
    schema_name: str
    schema_encoding: str
    schema_data: bytes = field(repr=False)
    metadata: tuple[tuple[str, str], ...] = ()

    @property
    def lossless(self) -> bool:
        return self.message_encoding == MESSAGE_ENCODING

    @property
    def bus_topic(self) -> str:
        return split_key(self.topic)[0]

    @property
    def instance(self) -> str | None:
        return split_key(self.topic)[1]

    @property
    def type_name(self) -> str:
        """The bus type (lossless channels) or the schema name."""
        return dict(self.metadata).get("message_type", self.schema_name)


class RecordDecodeError(ValueError):
    """A lossless record that does not decode into a valid bus message."""


@dataclass
class RecordedMessage:
    channel: ChannelInfo
    log_time_ns: int
    publish_time_ns: int
    sequence: int
    data: bytes

    def frames(self) -> list[memoryview]:
        """The wire frames after the topic: the header, then the buffers."""
        return unpack_frames(self.data)

    def decode(self) -> BusMessage:
        """The bus message, validated exactly as a subscriber would (arrays view the record)."""
        if not self.channel.lossless:
            raise RecordDecodeError(f"{self.channel.topic} is not a lossless channel")
        try:
            topic = get_topic(self.channel.bus_topic)
            _, msg = decode(
                [topic.name.encode(), *self.frames()], Limits(max_buffer_bytes=topic.max_bytes)
            )
        except (ValueError, UserError) as exc:
            raise RecordDecodeError(f"{self.channel.topic}: {exc}") from None
        if not isinstance(msg, topic.type):
            raise RecordDecodeError(f"{self.channel.topic} holds a {msg.TYPE}")
        return msg


def _channel_info(record: Channel, schemas: dict[int, Schema]) -> ChannelInfo:
    schema = schemas.get(record.schema_id)
    return ChannelInfo(
        id=record.id,
        topic=record.topic,
        message_encoding=record.message_encoding,
        schema_name=schema.name if schema else "",
        schema_encoding=schema.encoding if schema else "",
        schema_data=bytes(schema.data) if schema else b"",
        metadata=tuple(sorted(record.metadata.items())),
    )


class RecordingReader:
    """Reads one MCAP file, complete or cut short."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise UserError(f"{self.path} does not exist")
        if not self.path.is_file():
            raise UserError(f"{self.path} is not a file")
        self.size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(len(MCAP_MAGIC))
        if head != MCAP_MAGIC:
            raise UserError(f"{self.path} is not an MCAP file (it lacks the MCAP magic bytes)")
        self.complete: bool | None = None  # known after a scan: ended with a valid footer
        self.stop_reason = ""  # why a scan stopped before the footer
        self.metadata: dict[str, dict[str, str]] = {}
        self._channels: dict[int, ChannelInfo] | None = None

    # -- channels -------------------------------------------------------------------------
    def channels(self) -> list[ChannelInfo]:
        """Every channel: from the summary when the file has one, else by a full scan."""
        if self._channels is None:
            self._channels = self._summary_channels()
        if self._channels is None:
            found: dict[int, ChannelInfo] = {}
            for _ in self._scan(None, found):
                pass
            self._channels = found
        return sorted(self._channels.values(), key=lambda c: c.topic)

    def _summary_channels(self) -> dict[int, ChannelInfo] | None:
        try:
            with open(self.path, "rb") as f:
                summary = SeekingReader(f, record_size_limit=self.size).get_summary()
        except Exception:  # a cut or foreign tail: the caller scans instead
            return None
        if summary is None or not summary.channels:
            return None
        return {cid: _channel_info(ch, summary.schemas) for cid, ch in summary.channels.items()}

    # -- messages -------------------------------------------------------------------------
    def messages(self, topics: set[str] | None = None) -> Iterator[RecordedMessage]:
        """Messages in file order (the writer's log-time order), of ``topics`` (MCAP topics)
        or all. A cut or corrupt tail ends the iteration: see ``complete``/``stop_reason``."""
        found: dict[int, ChannelInfo] = {}
        yield from self._scan(topics, found)
        if self._channels is None:
            self._channels = found

    def _scan(
        self, topics: set[str] | None, channels: dict[int, ChannelInfo]
    ) -> Iterator[RecordedMessage]:
        schemas: dict[int, Schema] = {}
        self.complete, self.stop_reason = False, ""
        footer = False
        with open(self.path, "rb") as f:
            records = StreamReader(
                f, emit_chunks=True, record_size_limit=max(self.size, 1 << 16)
            ).records
            while True:
                try:
                    record = next(records)
                    inner = (
                        breakup_chunk(record, validate_crc=True)
                        if isinstance(record, Chunk)
                        else [record]
                    )
                except StopIteration:  # the footer and the closing magic were read
                    self.complete = footer
                    break
                except Exception as exc:  # the mcap reader raises many kinds on a cut/bad tail
                    self.stop_reason = self._describe_stop(exc, f.tell())
                    return
                for rec in inner:
                    if isinstance(rec, Schema):
                        schemas[rec.id] = rec
                    elif isinstance(rec, Channel):
                        channels[rec.id] = _channel_info(rec, schemas)
                    elif isinstance(rec, Message):
                        info = channels.get(rec.channel_id)
                        if info is None or (topics is not None and info.topic not in topics):
                            continue
                        yield RecordedMessage(
                            info, rec.log_time, rec.publish_time, rec.sequence, rec.data
                        )
                    elif isinstance(rec, Footer):
                        footer = True
                    elif isinstance(rec, Metadata):
                        self.metadata[rec.name] = dict(rec.metadata)

    def _describe_stop(self, exc: Exception, offset: int) -> str:
        kind = type(exc).__name__
        if kind == "EndOfFile" or offset >= self.size:
            return f"the file ends at byte {self.size} without its summary (cut short)"
        return f"unreadable record near byte {offset} of {self.size} ({kind}: {exc})"[:300]


class PerceptionDecoderFactory(McapDecoderFactory):
    """Lets any ``mcap`` reader decode lossless channels into bus messages::

    make_reader(f, decoder_factories=[PerceptionDecoderFactory()]).iter_decoded_messages()
    """

    def decoder_for(
        self, message_encoding: str, schema: Schema | None
    ) -> Callable[[bytes], BusMessage] | None:
        if message_encoding != MESSAGE_ENCODING or schema is None:
            return None
        topic_name = json.loads(schema.data).get("topic", "")
        topic = get_topic(topic_name)
        limits = Limits(max_buffer_bytes=topic.max_bytes)

        def decode_record(data: bytes) -> BusMessage:
            return decode([topic.name.encode(), *unpack_frames(data)], limits)[1]

        return decode_record


def read_all(path: str | Path, topics: set[str] | None = None) -> list[RecordedMessage]:
    """Every message of ``path`` (small files and tests)."""
    return list(RecordingReader(path).messages(topics))


def is_recording(path: Path) -> bool:
    """Whether ``path`` starts like an MCAP file (cheap; reads 8 bytes)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MCAP_MAGIC)) == MCAP_MAGIC
    except OSError:
        return False


__all__ = [
    "ChannelInfo",
    "ChannelSpec",
    "PerceptionDecoderFactory",
    "RecordDecodeError",
    "RecordedMessage",
    "RecordingReader",
    "RecordingWriteError",
    "RecordingWriter",
    "WriterOptions",
    "lossless_channel",
    "output_path",
    "read_all",
    "split_key",
]
