"""monaifrac/dicom/seg_read.py: a SEG any tool wrote, read back as the film's label map.

The SEGs here are made with highdicom directly, the way another tool would write them (other
codes, other segment order, FRACTIONAL, several films in one SEG), besides monaifrac's own writer.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.coding import Code

from monaifrac.dicom.films import write_dx
from monaifrac.dicom.seg import make_segmentation
from monaifrac.dicom.seg_read import read_fracture_label, read_seg_label, seg_time
from monaifrac.errors import InputError
from tests.conftest import draw_film

H, W = 40, 30
TISSUE = Code("85756007", "SCT", "Tissue")
ABNORMAL = Code("49755003", "SCT", "Morphologically Abnormal Structure")
FRACTURE_72704001 = Code("72704001", "SCT", "Fracture")
BONE_STRUCTURE = Code("272673000", "SCT", "Bone structure")
SOFT_TISSUE = Code("87784001", "SCT", "Soft tissue")


def _label() -> np.ndarray:
    """(40, 30): a bone bar, a fracture on it, a corner pixel that a transpose or flip would move."""
    label = np.zeros((H, W), np.uint8)
    label[15:25, 2:28] = 1
    label[17:20, 5:9] = 2
    label[0, 0] = 1
    return label


def _film(path, series_uid=None, study_uid=None, shade=0):
    return write_dx(path, draw_film(H, W, shade=shade).astype(np.uint16), series_uid=series_uid, study_uid=study_uid)


@pytest.fixture
def film(tmp_path):
    return _film(tmp_path / "film.dcm")


def _segment(number, label, kind, category=ABNORMAL):
    algorithm = hd.AlgorithmIdentificationSequence(name="another tool", version="1",
                                                   family=Code("123110", "DCM", "Artificial Intelligence"))
    return hd.seg.SegmentDescription(segment_number=number, segment_label=label, segmented_property_category=category,
                                     segmented_property_type=kind, algorithm_type="MANUAL" if number % 2 else
                                     "AUTOMATIC", algorithm_identification=None if number % 2 else algorithm)


def _foreign_seg(films, masks, segments, kind="BINARY"):
    """A SEG made by highdicom the way another tool would: ``masks`` (films, H, W, segments) of bools or fractions."""
    pixel_array = np.asarray(masks)
    pixel_array = pixel_array.astype(np.float32 if kind == "FRACTIONAL" else bool)
    return hd.seg.Segmentation(
        source_images=list(films), pixel_array=pixel_array, segmentation_type=kind, segment_descriptions=segments,
        series_instance_uid=hd.UID(), series_number=7, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="Other", manufacturer_model_name="viewer", software_versions="1", device_serial_number="1",
        omit_empty_frames=False)


def _dataset(seg) -> pydicom.Dataset:
    """What a PACS hands back: the SEG as plain pydicom."""
    import io

    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def test_monaifracs_own_seg_reads_back_as_the_label_map(film):
    seg = _dataset(make_segmentation(film, _label(), 0.9, 0.5))
    got = read_seg_label(seg, film)
    np.testing.assert_array_equal(got.label, _label())
    assert (got.has_fracture, got.has_bone, got.by_text) == (True, True, False)
    assert got.segments == {1: 1, 2: 2}
    assert got.series_uid == seg.SeriesInstanceUID and got.when == seg_time(seg) != ""


def test_a_fractional_seg_with_the_segments_the_other_way_round_and_other_snomed_codes(film):
    label = _label()
    fracture = (label == 2).astype(np.float32)
    fracture[30, 20] = 0.4  # below one half: not marked
    fracture[31, 20] = 0.6  # from one half up: marked
    bone = (label >= 1).astype(np.float32)  # this tool's bone includes the fracture
    masks = np.stack([fracture, bone], -1)[None]
    seg = _foreign_seg([film], masks, [_segment(1, "Fx", FRACTURE_72704001),
                                       _segment(2, "Skeleton", BONE_STRUCTURE, TISSUE)], kind="FRACTIONAL")
    got = read_seg_label(_dataset(seg), film)
    want = label.copy()
    want[31, 20] = 2
    np.testing.assert_array_equal(got.label, want)
    assert got.segments == {1: 2, 2: 1} and not got.by_text


def test_segments_without_known_codes_are_read_by_their_labels_and_others_ignored(film):
    label = _label()
    tissue = np.zeros((H, W), bool)
    tissue[10:30, :] = True
    masks = np.stack([tissue, label == 2], -1)[None]
    # a tool that codes everything as "abnormal structure" but names the segment
    seg = _foreign_seg([film], masks, [_segment(1, "soft tissue", SOFT_TISSUE, TISSUE),
                                       _segment(2, "Fracture line", ABNORMAL)])
    got = read_seg_label(_dataset(seg), film)
    np.testing.assert_array_equal(got.label, np.where(label == 2, 2, 0))
    assert got.by_text and got.has_fracture and not got.has_bone and got.segments == {2: 2}


def _two_film_seg(ap, lateral, ap_mask, lateral_mask) -> pydicom.Dataset:
    """One SEG with a frame on each of two films of a series (what a tool segmenting the AP and the lateral
    view at once writes). highdicom makes such a SEG only for films with a frame of reference, which a
    projection film has not: the second film's frame is moved into the first film's SEG."""
    segment = [_segment(1, "fracture", FRACTURE_72704001)]
    first = _dataset(_foreign_seg([ap], ap_mask[None, ..., None], segment))
    second = _dataset(_foreign_seg([lateral], lateral_mask[None, ..., None], segment))
    assert (H * W) % 16 == 0  # BINARY frames are packed bits: whole bytes, an even count, so they concatenate
    first.PixelData = first.PixelData + second.PixelData
    first.NumberOfFrames = 2
    first.PerFrameFunctionalGroupsSequence.append(second.PerFrameFunctionalGroupsSequence[0])
    first.ReferencedSeriesSequence[0].ReferencedInstanceSequence.append(
        second.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0])
    return first


def test_a_seg_of_two_films_gives_each_its_own_frames(tmp_path):
    study, series = hd.UID(), hd.UID()
    ap = _film(tmp_path / "ap.dcm", series, study)
    lateral = _film(tmp_path / "lat.dcm", series, study, shade=20)
    other = np.zeros((H, W), bool)
    other[1:4, 1:4] = True
    seg = _two_film_seg(ap, lateral, _label() == 2, other)
    np.testing.assert_array_equal(read_seg_label(seg, ap).label, np.where(_label() == 2, 2, 0))
    np.testing.assert_array_equal(read_seg_label(seg, lateral).label, other.astype(np.uint8) * 2)


def test_an_empty_fracture_segment_says_no_fracture(film):
    seg = _dataset(make_segmentation(film, np.where(_label() == 2, 1, _label()), None))
    got = read_seg_label(seg, film)
    assert got.has_fracture and not (got.label == 2).any() and (got.label == 1).any()


def test_a_training_label_needs_a_fracture_segment(film):
    """A bone-only SEG reads as a label map, but is no training label: it says nothing of fractures (an empty
    fracture segment does: no fracture on this film)."""
    bone_only = _dataset(_foreign_seg([film], (_label() >= 1)[None, ..., None], [_segment(1, "bone", BONE_STRUCTURE,
                                                                                         TISSUE)]))
    assert read_seg_label(bone_only, film).has_bone
    with pytest.raises(InputError, match=r"^SEG .*: has no fracture segment: it says nothing of fractures$"):
        read_fracture_label(bone_only, film)
    empty = _dataset(make_segmentation(film, np.where(_label() == 2, 1, _label()), None))
    assert not (read_fracture_label(empty, film).label == 2).any()


def test_seg_time_prefers_the_series_then_content_then_creation():
    ds = pydicom.Dataset()
    assert seg_time(ds) == ""
    ds.InstanceCreationDate, ds.InstanceCreationTime = "20240101", "101010"
    assert seg_time(ds) == "20240101101010"
    ds.ContentDate, ds.ContentTime = "20240202", "020202"
    assert seg_time(ds) == "20240202020202"
    ds.SeriesDate, ds.SeriesTime = "20240303", "030303.5"
    assert seg_time(ds) == "20240303030303.5"


def _bad(film, tmp_path, what):
    seg = _dataset(make_segmentation(film, _label(), None))
    if what == "other film":
        film = _film(tmp_path / "other.dcm")
    elif what == "size":
        film = film.copy()
        film.Rows = H + 2
    elif what == "no segment":
        for item, (code, label) in zip(seg.SegmentSequence, (("87784001", "soft tissue"), ("12345", "marker"))):
            item.SegmentedPropertyTypeCodeSequence[0].CodeValue = code
            item.SegmentLabel = label
    elif what == "not seg":
        seg = pydicom.dcmread(tmp_path / "film.dcm")
    elif what == "bad frames":
        seg.PixelData = seg.PixelData[: len(seg.PixelData) // 2]
    elif what == "garbage file":
        path = tmp_path / "garbage.dcm"
        path.write_bytes(b"not dicom at all")
        seg = path
    return seg, film


@pytest.mark.parametrize("what, words", [
    ("other film", "other image(s), not the film"),
    ("size", f"{H} x {W} pixels for a film of {H + 2} x {W}"),
    ("no segment", "no segment says fracture or bone (segments: 1 'soft tissue'; 2 'marker')"),
    ("not seg", "not a DICOM Segmentation (Modality 'DX'"),
    ("bad frames", "cannot be decoded for the film"),
    ("garbage file", "not a readable DICOM file"),
])
def test_a_seg_that_cannot_be_a_label_of_the_film_says_why_in_one_line(film, tmp_path, what, words):
    seg, film = _bad(film, tmp_path, what)
    with pytest.raises(InputError) as caught:
        read_seg_label(seg, film)
    message = str(caught.value)
    assert words in message and "\n" not in message
    assert message.startswith(str(tmp_path / "garbage.dcm") if what == "garbage file" else "SEG ")


def test_segment_groups_shared_by_all_frames_are_read_like_per_frame_ones(film):
    """highdicom 0.28 writes a one-segment SEG's Segment Identification once, in Shared Functional Groups;
    highdicom 0.22 (MONAI Label's environment) reads it only per frame: the reader repeats it there."""
    from monaifrac.dicom.seg_read import _groups_per_frame

    seg = _dataset(_foreign_seg([film], (_label() == 2)[None, ..., None], [_segment(1, "fracture", FRACTURE_72704001)]))
    assert "SegmentIdentificationSequence" in seg.SharedFunctionalGroupsSequence[0]
    moved = _groups_per_frame(seg)
    assert "SegmentIdentificationSequence" not in moved.SharedFunctionalGroupsSequence[0]
    assert all(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber == 1
               for f in moved.PerFrameFunctionalGroupsSequence)
    assert "SegmentIdentificationSequence" in seg.SharedFunctionalGroupsSequence[0]  # the caller's SEG unchanged
    np.testing.assert_array_equal(read_seg_label(seg, film).label, np.where(_label() == 2, 2, 0))
