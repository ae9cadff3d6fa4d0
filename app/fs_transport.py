"""kombu's ``filesystem://`` transport with an atomic put: the embedded default's broker.

kombu's own ``_put`` creates the message file, locks it, then writes; its ``_get`` moves any
matching file away without taking the lock and reads it. A consumer polling at the wrong moment
reads an empty file, fails to decode it, and the message is lost (seen here: the worker crashed
with ``JSONDecodeError`` while the API enqueued a burst of seal checks). Writing to a hidden name
that ``_get`` ignores and renaming it into place makes every message appear whole or not at all.

Registered as the ``lethefs://`` transport alias (``app.broker`` imports this module).
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

ALIAS = "lethefs"


class Channel(filesystem.Channel):
    """Filesystem channel whose messages are renamed into the queue folder only when complete."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot and no ".<queue>.msg" suffix: kombu's _get never picks this name up.
        partial = os.path.join(self.data_folder_out, f".part-{uuid.uuid4()}")
        try:
            with open(partial, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, final)
        except OSError as exc:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")
