"""DICOS DX reader/writer: both SOP classes, single/dual energy, transfer syntaxes, refusals."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID

from nii.containers import RawScan, Scan
from nii.errors import CorruptFileError, InvalidParameterError, SizeLimitError, UnsupportedFormatError
from nii.io import dicos, read

from .conftest import make_raw, make_scan


def _equal_raw(a: RawScan, b: RawScan) -> None:
    np.testing.assert_array_equal(a.counts, b.counts)
    assert a.counts.dtype == b.counts.dtype
    for name in ("dark", "air", "air_end", "dead_mask"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape, name
            np.testing.assert_array_equal(x, y)
    assert a.energies == b.energies and a.pixel_pitch_mm == b.pixel_pitch_mm
    assert (a.scan_id, a.profile, a.acquired_at) == (b.scan_id, b.profile, b.acquired_at)


@pytest.mark.parametrize("ts", ["explicit-le", "rle", "jpeg-lossless", "jpeg-lossless-p14"])
@pytest.mark.parametrize("energies", [1, 2])
def test_for_processing_round_trip(tmp_path, ts, energies):
    r = make_raw(energies, energies=energies)
    predictor = 6 if ts == "jpeg-lossless-p14" else 1
    path = dicos.write(r, tmp_path / "dx.dcs", transfer_syntax=ts, jpeg_predictor=predictor)
    back = read(path)
    assert isinstance(back, RawScan) and back.source.format == "dicos"
    _equal_raw(r, back)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == dicos.DX_FOR_PROCESSING
    assert ds.file_meta.TransferSyntaxUID == dicos.TRANSFER_SYNTAXES[ts]
    assert (ds.Rows, ds.Columns) == r.shape[1:]  # rows = detector channels, columns = scan lines
    assert int(ds.get("NumberOfFrames", 1)) == energies
    assert ds.PresentationIntentType == "FOR PROCESSING" and ds.Modality == "DX"
    assert back.metadata["dicos_sop_instance_uid"] == ds.SOPInstanceUID


def test_jpeg_lossless_frames_are_real_lossless_jpeg(tmp_path):
    """Each encapsulated frame is a standalone SOF3 stream that libjpeg decodes to the counts."""
    libjpeg = pytest.importorskip("libjpeg")
    from pydicom.encaps import generate_frames

    r = make_raw(7)
    ds = pydicom.dcmread(dicos.write(r, tmp_path / "j.dcs", transfer_syntax="jpeg-lossless"))
    frames = list(generate_frames(ds.PixelData, number_of_frames=2))
    assert len(frames) == 2
    for e, frame in enumerate(frames):
        assert frame[:4] == b"\xff\xd8\xff\xc3"
        np.testing.assert_array_equal(libjpeg.decode(frame), r.counts[e])


def test_uint32_counts(tmp_path):
    r = make_raw(3, dtype=np.uint32)
    _equal_raw(r, read(dicos.write(r, tmp_path / "u32.dcs")))
    for ts in ("rle", "jpeg-lossless"):
        with pytest.raises(InvalidParameterError, match="16-bit"):
            dicos.write(r, tmp_path / "u32c.dcs", transfer_syntax=ts)
    assert not (tmp_path / "u32c.dcs").exists()


@pytest.mark.parametrize("ts", ["explicit-le", "jpeg-lossless"])
def test_for_presentation_round_trip(tmp_path, ts):
    s = make_scan(2)
    path = dicos.write(s, tmp_path / "p.dcs", transfer_syntax=ts)
    back = read(path)
    assert isinstance(back, Scan) and back.rendered and back.metadata["presentation"]
    assert pydicom.dcmread(path).SOPClassUID == dicos.DX_FOR_PRESENTATION
    # 16-bit display transmission: error bounded by half a grey level
    t = np.exp(-s.attenuation.astype(np.float64)) * 65535
    bound = 0.5 / np.maximum(t - 0.5, 0.5) + 1e-6
    assert np.all(np.abs(back.attenuation - s.attenuation) <= bound)
    assert back.energies == s.energies


def test_monochrome1_is_inverted(tmp_path):
    s = make_scan(2)
    path = dicos.write(s, tmp_path / "m.dcs")
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.PixelData = (65535 - arr).astype("<u2").tobytes()
    ds.save_as(tmp_path / "m1.dcs")
    np.testing.assert_allclose(read(tmp_path / "m1.dcs").attenuation, read(path).attenuation, atol=1e-6)


def test_type_and_sop_class_must_agree(tmp_path, raw_scan, scan):
    with pytest.raises(InvalidParameterError):
        dicos.write(raw_scan, tmp_path / "a.dcs", for_processing=False)
    with pytest.raises(InvalidParameterError):
        dicos.write(scan, tmp_path / "a.dcs", for_processing=True)
    with pytest.raises(InvalidParameterError):
        dicos.write(raw_scan, tmp_path / "a.dcs", transfer_syntax="jpeg2000")
    with pytest.raises(InvalidParameterError, match="predictor"):
        dicos.write(raw_scan, tmp_path / "a.dcs", transfer_syntax="jpeg-lossless", jpeg_predictor=4)
    assert not list(tmp_path.iterdir())


def test_chosen_uids(tmp_path, raw_scan):
    path = dicos.write(
        raw_scan, tmp_path / "u.dcs", sop_instance_uid="1.2.3.4", series_instance_uid="1.2.3.5", study_instance_uid="1.2.3.6"
    )
    ds = pydicom.dcmread(path)
    assert (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID) == ("1.2.3.4", "1.2.3.5", "1.2.3.6")
    assert ds.file_meta.MediaStorageSOPInstanceUID == "1.2.3.4"


def test_foreign_dx_without_private_block(tmp_path, raw_scan):
    """A DX from another toolkit: standard attributes only, no references."""
    ds = pydicom.dcmread(dicos.write(raw_scan, tmp_path / "n.dcs"))
    ds.remove_private_tags()
    ds.ImagerPixelSpacing = ["0.5", "2.0"]
    ds.save_as(tmp_path / "foreign.dcs")
    back = read(tmp_path / "foreign.dcs")
    np.testing.assert_array_equal(back.counts, raw_scan.counts)
    assert back.dark is None and back.air is None and back.metadata["references"] == "absent"
    assert [e.label for e in back.energies] == ["low", "high"]  # from the Frame Label Vector
    assert back.pixel_pitch_mm == (0.5, 2.0)
    del ds.FrameLabelVector, ds.ImagerPixelSpacing
    ds.save_as(tmp_path / "bare.dcs")
    bare = read(tmp_path / "bare.dcs")
    assert bare.metadata["energies_assumed"] and bare.metadata["pitch_assumed"]


def test_single_energy_kvp_from_standard_attribute(tmp_path):
    r = make_raw(4, energies=1, refs=False)
    ds = pydicom.dcmread(dicos.write(r, tmp_path / "s.dcs"))
    ds.remove_private_tags()
    ds.save_as(tmp_path / "s2.dcs")
    back = read(tmp_path / "s2.dcs")
    assert back.energies[0].kvp == 160 and "energies_assumed" not in back.metadata


def _dataset(sop_class: str, rows: int = 4, cols: int = 5, pixels: bytes | None = None) -> pydicom.Dataset:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = UID(sop_class)
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = pixels if pixels is not None else np.zeros((rows, cols), "<u2").tobytes()
    return ds


def test_ct_dicom_is_refused(tmp_path):
    path = tmp_path / "ct.dcm"
    _dataset("1.2.840.10008.5.1.4.1.1.2").save_as(path, enforce_file_format=True)
    with pytest.raises(UnsupportedFormatError, match="ct.dcm.*CT Image Storage.*not a DICOS DX"):
        read(path)


def test_tdr_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "tdr.dcs"
    ds = _dataset("1.2.840.10008.5.1.4.1.1.501.3")
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(UnsupportedFormatError, match="tdr.dcs.*Threat Detection Report"):
        read(path)


def test_size_limit_before_decoding(tmp_path):
    path = tmp_path / "huge.dcs"
    ds = _dataset(dicos.DX_FOR_PROCESSING, rows=60000, cols=60000, pixels=b"\x00\x00" * 8)
    ds.NumberOfFrames = 2
    ds.save_as(path, enforce_file_format=True)
    assert path.stat().st_size < 4096
    with pytest.raises(SizeLimitError, match="huge.dcs"):
        read(path)
    # under a big enough limit the same file is a corrupt one (pixel data too short), not a crash
    with pytest.raises(CorruptFileError, match="huge.dcs"):
        read(path, max_pixels=10**10)


def test_missing_pixel_data(tmp_path):
    path = tmp_path / "nopix.dcs"
    ds = _dataset(dicos.DX_FOR_PROCESSING)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(CorruptFileError, match="nopix.dcs.*Pixel Data"):
        read(path)


def test_zero_air_reference(tmp_path):
    r = make_raw(5)
    path = dicos.write(r.replace(air=np.zeros_like(r.air)), tmp_path / "air0.dcs")
    from nii.errors import InvalidDataError

    with pytest.raises(InvalidDataError, match="air0.dcs.*air"):
        read(path)


def _palette_ds(path, for_processing: bool, indices: np.ndarray, lut: np.ndarray):
    """A PALETTE COLOR DX (as the Stratovan DICOS SDK can write) with an 8-bit RGB palette."""
    ds = _dataset(dicos.DX_FOR_PROCESSING if for_processing else dicos.DX_FOR_PRESENTATION, *indices.shape)
    ds.Modality = "DX"
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelData = indices.astype("<u2").tobytes()
    for ch, name in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [len(lut), 0, 16])
        setattr(ds, f"{name}PaletteColorLookupTableData", (lut[:, ch].astype("<u2") * 257).tobytes())
    ds.save_as(path, enforce_file_format=True)


def test_palette_color_presentation_is_a_rendering(tmp_path):
    from nii.materials import render_pseudocolor

    from .conftest import make_material_scan

    s = make_material_scan(5)
    rgb = render_pseudocolor(s.attenuation[0], s.material)
    palette, indices = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    _palette_ds(tmp_path / "pal.dcs", False, indices.reshape(rgb.shape[:2]), palette)
    back = read(tmp_path / "pal.dcs")
    assert isinstance(back, Scan) and back.rendered and back.metadata["dicos_photometric"] == "PALETTE COLOR"
    np.testing.assert_array_equal(back.material, s.material)
    np.testing.assert_array_equal(back.color, rgb)


def test_palette_color_for_processing_reads_stored_values(tmp_path):
    idx = np.arange(20, dtype=np.uint16).reshape(4, 5)
    _palette_ds(tmp_path / "palp.dcs", True, idx, np.zeros((32, 3), np.uint8))
    back = read(tmp_path / "palp.dcs")
    np.testing.assert_array_equal(back.counts[0], idx)
    assert back.metadata["dicos_photometric"] == "PALETTE COLOR"


def test_rgb_dx_refused(tmp_path):
    ds = _dataset(dicos.DX_FOR_PROCESSING)
    ds.PhotometricInterpretation = "YBR_FULL"
    ds.save_as(tmp_path / "ybr.dcs", enforce_file_format=True)
    with pytest.raises(UnsupportedFormatError, match="ybr.dcs.*YBR_FULL"):
        read(tmp_path / "ybr.dcs")
