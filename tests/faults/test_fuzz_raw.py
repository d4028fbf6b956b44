"""Property-based tests and a fixed-budget fuzz of the raw-file reader (issue 19, item 4).

Whatever bytes arrive in ``incoming/``, :func:`zsds.ingest.validate.validate_raw` either
accepts the file or raises :class:`RawFileError` with a machine reason and a one-line message:
never another exception (which would stop a night) and never a crash. The fuzz mutates a real-
layout raw file (byte flips, truncations, duplicated or deleted blocks, edited header cards);
hypothesis is derandomised, so CI runs the same examples every time within a fixed budget.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zsds.core.naming import RawName, parse_raw_name
from zsds.ingest.validate import RawFileError, validate_raw

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
REASONS = {"bad_name", "not_fits", "truncated", "bad_checksum", "bad_structure", "missing_keyword",
           "bad_value"}


class RawBytes(tuple):
    """(name, bytes) of a valid raw file, with a short repr for hypothesis's reports."""

    def __repr__(self) -> str:
        return f"RawBytes({self[0]!r}, {len(self[1])} bytes)"


@pytest.fixture(scope="module")
def raw_file(night_template: Path) -> RawBytes:
    sci = next(p for p in sorted((night_template / "incoming").iterdir())
               if p.name.endswith("_o.fits.fz"))
    return RawBytes((sci.name, sci.read_bytes()))


def _check(tmp: Path, name: str, data: bytes) -> None:
    path = tmp / name
    path.write_bytes(data)
    try:
        validate_raw(path)
    except RawFileError as exc:
        assert exc.reason in REASONS, exc.reason
        assert exc.message and "\n" not in exc.message


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**9), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**9), st.just(0)),
    st.tuples(st.just("drop_block"), st.integers(0, 10**9), st.just(0)),
    st.tuples(st.just("dup_block"), st.integers(0, 10**9), st.just(0)),
    st.tuples(st.just("card"), st.integers(0, 10**9), st.integers(0, 255)),
)


def _mutate(data: bytes, muts: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, val in muts:
        if not buf:
            break
        i = pos % len(buf)
        b0 = (i // 2880) * 2880
        if kind == "flip":
            buf[i] ^= val
        elif kind == "truncate":
            del buf[i:]
        elif kind == "drop_block":
            del buf[b0 : b0 + 2880]
        elif kind == "dup_block":
            buf[b0:b0] = buf[b0 : b0 + 2880]
        else:  # overwrite the value field of a header card in the first block
            card = (pos % 36) * 80
            buf[card + 10 : card + 30] = bytes([32 + val % 95]) * 20
    return bytes(buf)


@FUZZ
@given(muts=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_raw_file_is_accepted_or_refused_with_a_reason(raw_file, tmp_path_factory,
                                                                muts) -> None:
    name, data = raw_file
    _check(tmp_path_factory.mktemp("fuzz"), name, _mutate(data, muts))


@FUZZ
@given(data=st.binary(max_size=3 * 2880))
def test_arbitrary_bytes_are_refused_with_a_reason(raw_file, tmp_path_factory, data) -> None:
    _check(tmp_path_factory.mktemp("bytes"), raw_file[0], data)


@settings(max_examples=300, derandomize=True, database=None)
@given(st.text(max_size=80))
def test_raw_name_parser_accepts_or_names_the_file(text: str) -> None:
    try:
        n = parse_raw_name(text)
    except ValueError as exc:
        assert text in str(exc) or "/" in text or "\x00" in text
    else:
        assert isinstance(n, RawName)


@settings(max_examples=300, derandomize=True, database=None)
@given(ffd=st.from_regex(r"20[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9])[0-9]{6}", fullmatch=True),
       field=st.integers(0, 999999), fc=st.sampled_from(["zg", "zr", "zi", "bi", "dk"]),
       ccd=st.integers(1, 16), t=st.sampled_from(list("obdfcg")))
def test_raw_names_round_trip(ffd, field, fc, ccd, t) -> None:
    n = RawName(ffd, field, fc, ccd, t)
    assert parse_raw_name(n.filename) == n
    assert parse_raw_name(n.filename.removesuffix(".fz")) == n
