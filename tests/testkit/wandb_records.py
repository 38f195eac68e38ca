"""Read an offline wandb run (``wandb/offline-run-*/run-*.wandb``) without wandb's servers or private APIs.

The file is wandb's 7-byte header (``:W&B``, magic 0xBEE1, version) followed by LevelDB's log format:
32 KiB blocks of chunks, each with a 7-byte header (CRC32C, little-endian length, type: 1 full, 2 first,
3 middle, 4 last) and a payload; the reassembled payloads are ``wandb_internal_pb2.Record`` messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a wandb run file")
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a chunk header is zero padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        kind = data[pos + 6]
        payload = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0:  # zero fill to the end of the block
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        if kind in (FULL, FIRST):
            pending = payload
        else:
            pending += payload
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def run_contents(path: Path) -> dict[str, Any]:
    """{"config": {key: json}, "history_keys": set, "summary": {key: json}, "run": {group, tags, name}}."""
    config: dict[str, str] = {}
    history: set[str] = set()
    summary: dict[str, str] = {}
    run: dict[str, Any] = {}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "config":
            config.update({_key(i): i.value_json for i in record.config.update})
        elif kind == "history":
            history.update(_key(i) for i in record.history.item)
        elif kind == "summary":
            summary.update({_key(i): i.value_json for i in record.summary.update})
        elif kind == "run":
            config.update({_key(i): i.value_json for i in record.run.config.update})
            run = {"group": record.run.run_group, "tags": list(record.run.tags), "name": record.run.display_name}
    return {"config": config, "history_keys": history, "summary": summary, "run": run}
