import hashlib

import numpy as np
import pyarrow as pa
import pytest

from cdiscount.md5_keys import hex_digits, md5_keys


def test_md5_keys_are_the_raw_digests_and_reject_what_is_not_a_hash() -> None:
    digests = [hashlib.md5(str(i).encode()).hexdigest() for i in range(300)]
    arr = pa.chunked_array([digests[:100], digests[100:]]).filter(pa.array([i % 3 != 0 for i in range(300)]))
    keys = md5_keys(arr)
    assert keys.dtype == np.dtype("S16")
    assert [bytes(k).ljust(16, b"\0") for k in keys] == [bytes.fromhex(d) for i, d in enumerate(digests) if i % 3]
    assert len(md5_keys(pa.array([], pa.string()))) == 0
    for bad in (["xyz"], [digests[0][:-1] + "g"], [None]):
        with pytest.raises(ValueError, match="32 hexadecimal"):
            md5_keys(pa.array(bad, pa.string()))


def test_hex_digits_reads_the_leading_digits_of_each_hash() -> None:
    digests = [hashlib.md5(str(i).encode()).hexdigest() for i in range(50)]
    got = hex_digits(pa.array(digests), 4)
    assert got.tolist() == [[int(c, 16) for c in d[:4]] for d in digests]
    assert hex_digits(pa.array(["ab"]), 4) is None  # not a hash: the caller's general way
