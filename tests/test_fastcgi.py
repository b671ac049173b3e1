"""kiln.pool.fastcgi's writer: records as PHP's reader takes them (no PHP needed here).

PHP's fcgi_read_request refuses a record whose content + padding is over 65,535 bytes and
decodes each PARAMS record alone, so a pair cut between two records is lost (issue 27).
"""
from __future__ import annotations

import io

import pytest

from kiln.pool import fastcgi


def records(data: bytes) -> list[fastcgi.Record]:
    stream, out = io.BytesIO(data), []
    while (record := fastcgi.read_record(stream)) is not None:
        out.append(record)
    return out


def padded_sizes(data: bytes) -> list[int]:
    """content + padding of each record, read from the headers themselves."""
    sizes, i = [], 0
    while i < len(data):
        length, pad = int.from_bytes(data[i + 4:i + 6], "big"), data[i + 6]
        sizes.append(length + pad)
        i += 8 + length + pad
    return sizes


@pytest.mark.parametrize("size", [0, 1, 65_527, 65_528, 65_529, 65_535, 65_536, 200_000])
def test_stream_records_fit_phps_buffer_with_their_padding(size):
    content = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    data = fastcgi.encode(fastcgi.STDIN, 1, content)
    assert all(n <= 0xFFFF for n in padded_sizes(data)), padded_sizes(data)
    assert b"".join(r.content for r in records(data)) == content


@pytest.mark.parametrize("count", [4_700, 5_000, 20_000])
def test_params_are_cut_between_pairs_and_each_record_decodes_alone(count):
    params = [(f"HTTP_X_{i}", "y") for i in range(count)] + [("HTTP_COOKIE", "c" * 61_440)]
    data = fastcgi.encode_params_records(7, params)
    assert all(n <= 0xFFFF for n in padded_sizes(data))
    got = []
    for record in records(data):
        assert (record.type, record.request_id) == (fastcgi.PARAMS, 7) and record.content
        got += fastcgi.decode_pairs(record.content)   # would raise on a pair cut in two
    assert got == params


@pytest.mark.parametrize("total", [65_520, 65_528, 65_535, 65_536, 66_000])
def test_a_request_just_under_and_over_64_kib_of_params_round_trips(total):
    params = {"A": "a" * 40_000, "B": ""}
    params["B"] = "b" * (total - len(fastcgi.encode_params(params)) - 3)   # its length: 4 bytes
    assert len(fastcgi.encode_params(params)) == total
    got = records(fastcgi.request(1, params, b"body", keep_conn=True))
    params_records = [r for r in got if r.type == fastcgi.PARAMS]
    assert len(params_records) == (2 if total <= fastcgi.MAX_PART else 3)   # + the empty one
    assert [r.type for r in got][-2:] == [fastcgi.STDIN, fastcgi.STDIN]
    assert fastcgi.decode_params(b"".join(r.content for r in params_records)) == params


def test_one_pair_longer_than_a_record_is_refused_with_its_name():
    with pytest.raises(fastcgi.ParamTooLarge, match="HTTP_COOKIE is 70016 bytes"):
        fastcgi.encode_params_records(1, {"HTTP_COOKIE": "c" * 70_000})
