"""Every reader claims its own samples and declines every other format's."""

from __future__ import annotations

import pytest

from nii.io._registry import HEAD_BYTES, READERS, reader_module

from .conftest import EXPECTED_FORMAT


@pytest.mark.parametrize("reader", sorted(READERS))
def test_sniffers_claim_only_their_own(samples, reader):
    mod = reader_module(reader)
    assert mod.FORMAT == reader
    for key, path in samples.items():
        head = path.read_bytes()[:HEAD_BYTES]
        assert mod.sniff(head, path) is (EXPECTED_FORMAT[key] == reader), (reader, key)


def test_raw_sidecar_is_claimed_by_raw_only(samples):
    side = samples["raw"].with_name(samples["raw"].name + ".json")
    head = side.read_bytes()[:HEAD_BYTES]
    claims = [name for name in READERS if reader_module(name).sniff(head, side)]
    assert claims == ["raw"]


@pytest.mark.parametrize("reader", sorted(READERS))
def test_sniffers_decline_junk(tmp_path, reader):
    path = tmp_path / "junk.dat"
    path.write_bytes(b"GIF89a" + bytes(200))
    assert reader_module(reader).sniff(path.read_bytes(), path) is False
