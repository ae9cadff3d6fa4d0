"""kombu's ``filesystem://`` transport with an atomic put: the embedded default's broker.

kombu's own ``_put`` creates the message file, locks it, then writes; its ``_get`` moves any
matching file away without taking the lock and reads it. A consumer polling at the wrong moment
reads an empty file, fails to decode it, and the message is lost (seen here: the worker crashed
with ``JSONDecodeError`` while the API enqueued a burst of seal checks). Writing to a hidden name
that ``_get`` ignores and renaming it into place makes every message appear whole or not at all.

kombu's ``_get`` takes the lexically first name, and its names start with a millisecond clock
followed by a random uuid, so two messages put in the same millisecond came out in random order.
Names here start with a zero-padded nanosecond clock and a per-process counter: FIFO within a
producer, clock order across producers.

Registered as the ``lethefs://`` transport alias (``app.broker`` imports this module).
"""

from __future__ import annotations

import itertools
import os
import uuid
from time import monotonic_ns
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

ALIAS = "lethefs"
_SEQUENCE = itertools.count()


class Channel(filesystem.Channel):
    """Filesystem channel whose messages are renamed into the queue folder only when complete."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        # No dot before ".{queue}.msg": kombu's _get matches on the text after the first dot.
        name = f"{monotonic_ns():020d}_{next(_SEQUENCE):012d}_{uuid.uuid4().hex}.{queue}.msg"
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
