"""``prpt info [BLOCK]``: what peripety knows about a block device.

BLOCK is any key the resolver takes (name, ``major:minor``, /dev path or
symlink, mount point, SCSI address, FS UUID, WWID). Without BLOCK, every
block device is listed (multipath paths under their map).
"""

from __future__ import annotations

import json

import click

from ..devices import list_devices, resolve
from ..errors import DeviceNotFound
from ..event import BlkInfo
from .options import OUTPUT_JSON, OUTPUT_JSONL, output_options, verbose_option

# Order and labels of the text layout; the names are BlkInfo's (the JSON keys).
_TEXT_FIELDS = (
    "blk_path", "preferred_blk_path", "blk_type", "wwid", "dev_num", "diskseq", "uuid",
    "mount_point", "transport_id", "transport", "owners_wwids", "owners_types",
    "owners_paths", "owners_transport_ids", "missing",
)
_KEY_WIDTH = max(len(f) for f in _TEXT_FIELDS)


def format_blk_info(info: BlkInfo) -> str:
    """The original's ``key : value`` layout; lists continue on aligned lines."""
    lines = []
    for name in _TEXT_FIELDS:
        value = getattr(info, name)
        if isinstance(value, dict):
            value = [f"{k}={v}" for k, v in value.items()]
        if isinstance(value, list):
            if not value:
                continue
            lines.append(f"{name:<{_KEY_WIDTH}} : {value[0]}")
            lines.extend(f"{'':<{_KEY_WIDTH}}   {item}" for item in value[1:])
        elif value not in (None, ""):
            lines.append(f"{name:<{_KEY_WIDTH}} : {value}")
    return "\n".join(lines)


@click.command(name="info")
@click.argument("block", required=False)
@output_options
@verbose_option
def command(block: str | None, output_format: str) -> None:
    """Show the identity of BLOCK (a name, major:minor, /dev path, mount
    point, SCSI address, FS UUID or WWID), or of every block device."""
    if block is None:
        infos = list_devices()
    else:
        try:
            infos = [resolve(block)]
        except DeviceNotFound as exc:
            raise click.ClickException(f"block device {exc}") from None
    if output_format == OUTPUT_JSON:
        data = infos[0].to_dict() if block is not None else [i.to_dict() for i in infos]
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif output_format == OUTPUT_JSONL:
        for info in infos:
            click.echo(json.dumps(info.to_dict(), separators=(",", ":"), ensure_ascii=False))
    else:
        click.echo("\n\n".join(format_blk_info(i) for i in infos))
