"""Coverage-guided fuzzing (atheris, libFuzzer) of the worker's decode step on one record.

Each input is one Kafka record: its first byte says what the message key is (none, the seeds'
customer id ``c-1``, or the next bytes of the input), the rest is the record's value. The record
goes through ``engine.stream.decoding.BatchDecoder`` as the worker decodes it, and must end as
exactly one event or one dead letter whose reason is one line of at most ``MAX_REASON``
characters in a known category (the invariants of ``tests/unit/test_fuzz_event_decoder.py``);
the C fast path (``decode_event``) and the validator it stands for
(``validate_event(decode_payload(...))``) must give the same event or the same reason.
Anything else raises, which libFuzzer reports as a crash with the input that caused it.

Usage (from the repository root; libFuzzer writes the inputs it finds into the first directory)::

    python tests/fuzz/fuzz_event_decoder.py --write-seeds DIR   # a few valid msgpack and JSON events
    python tests/fuzz/fuzz_event_decoder.py -max_len=4096 -max_total_time=600 DIR

``tests/unit/test_atheris_decoder.py`` runs it with a fixed budget.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path

import atheris
import msgpack

TESTS = Path(__file__).resolve().parents[1]
# The checkout this file is in is the one fuzzed (not whichever one is installed in the venv).
sys.path[:0] = [str(TESTS.parent), str(TESTS)]

with atheris.instrument_imports(include=["engine", "features"]):
    from engine.codecs import decode_payload
    from engine.event_decoder import decode_event
    from engine.schemas import InvalidEvent, validate_event
    from engine.stream.decoding import BatchDecoder
    from features.event import EVENT_TYPES, Event

from bad_input import CURRENCY, as_json, envelope, pack  # noqa: E402 (after the path is set)

from engine.ops.metrics import dead_letter_category  # noqa: E402
from engine.output import DeadLetter  # noqa: E402
from engine.stream.batch_records import RawRecord  # noqa: E402

MAX_REASON = 400
"""Longest reason accepted, as in ``tests/unit/test_fuzz_event_decoder.py``."""
SEED_CUSTOMER = "c-1"
NO_KEY, SEED_KEY = 0, 1  # (and 2: the key is the next bytes of the input)


def letter(reason: str, record: RawRecord) -> DeadLetter:
    return DeadLetter(
        reason, record.value or b"", record.key, record.topic, record.partition, record.offset, 0
    )


def check(holds: bool, message: str) -> None:
    """An invariant; raised rather than asserted so that ``python -O`` still checks it."""
    if not holds:
        raise AssertionError(message)


def split(data: bytes) -> tuple[bytes | None, bytes]:
    """(message key, record value) of a fuzzer input: its first byte says what the key is.

    By hand rather than with ``atheris.FuzzedDataProvider``, which takes integers from the end of
    the input: the seeds' values must stay whole events.
    """
    if not data:
        return None, b""
    selector, rest = data[0], data[1:]
    mode = selector % 3
    if mode == NO_KEY:
        return None, rest
    if mode == SEED_KEY:
        return SEED_CUSTOMER.encode(), rest
    size = selector // 3 % 32
    return rest[:size], rest[size:]


def verdict(decode: Callable[[bytes, str | None], Event], value: bytes) -> tuple[str, str]:
    """What one of the two decoders makes of ``value``: an event's fields or a reason."""
    try:
        event = decode(value, CURRENCY)
    except InvalidEvent as exc:
        return ("invalid", str(exc))
    # repr keeps apart what == does not: 1 and 1.0 and True, 0.0 and -0.0, the order of attrs.
    return ("event", repr((event.event_id, event.customer_id, event.type, event.ts, event.attrs)))


def slow(value: bytes, currency: str | None) -> Event:
    return validate_event(decode_payload(value), currency=currency)


def TestOneInput(data: bytes) -> None:  # the name atheris and libFuzzer call
    key, value = split(data)
    events, dead = BatchDecoder(CURRENCY, letter).decode([RawRecord("segflow.events", 3, 41, key, value)])
    check(len(events) + len(dead) == 1, f"{len(events)} events and {len(dead)} dead letters")
    if events:
        positioned = events[0]
        check((positioned.partition, positioned.offset) == (3, 41), "the event lost its position")
        check(key is None or key == positioned.event.customer_id.encode(), "a key that is not the id")
    else:
        reason = dead[0].reason
        check("\n" not in reason and 0 < len(reason) <= MAX_REASON, f"a malformed reason {reason!r}")
        check(dead_letter_category(reason) != "other", f"a reason in no category: {reason!r}")
        wire = msgpack.unpackb(dead[0].encode(), raw=False)
        check(
            wire["reason"] == reason and wire["raw"] == value[:1_000_000],
            "the dead letter lost its reason or raw",
        )
    fast, reference = verdict(decode_event, value), verdict(slow, value)
    check(fast == reference, f"decode_event gave {fast!r}, the validator {reference!r}")


def seeds() -> dict[str, bytes]:
    """A few valid events, msgpack and JSON, each led by its key byte."""
    rng = random.Random(1)
    found: dict[str, bytes] = {}
    for n, event_type in enumerate(EVENT_TYPES):
        env = envelope(rng, event_type, SEED_CUSTOMER, f"e-{n}", 1_700_000_000_000 + n)
        key = bytes([SEED_KEY if n % 3 else NO_KEY])
        found[f"{event_type}.msgpack"] = key + pack(env)
        found[f"{event_type}.json"] = key + as_json(env)
    return found


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--write-seeds":
        corpus = Path(argv[2])
        corpus.mkdir(parents=True, exist_ok=True)
        for name, data in seeds().items():
            (corpus / name).write_bytes(data)
        return
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
