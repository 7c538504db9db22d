"""Recording and replay of drives: MCAP files with a lossless channel per bus topic (every frame of
every message, byte for byte) and Foxglove view channels, importers from video files, image
folders and ROS bags, summaries, and rendered review videos. docs/recording.md has the format.
"""

from perception.recording.mcap_io import (
    ChannelInfo,
    RecordedMessage,
    RecordingReader,
    RecordingWriteError,
    RecordingWriter,
    WriterOptions,
)

__all__ = [
    "ChannelInfo",
    "RecordedMessage",
    "RecordingReader",
    "RecordingWriteError",
    "RecordingWriter",
    "WriterOptions",
]
