"""Capture pieces that need no lab: pcap record splitting, filter checks, bounds."""

import io
import struct

import pytest

from ltb.capture import CaptureBounds, CaptureError, _pcap_records, check_filter


def pcap(*payloads: bytes) -> bytes:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    records = b"".join(struct.pack("<IIII", 1, 0, len(p), len(p)) + p for p in payloads)
    return header + records


def test_pcap_stream_splits_into_header_and_whole_packets():
    items = list(_pcap_records(io.BytesIO(pcap(b"abc", b"defgh"))))
    assert len(items) == 3
    assert len(items[0]) == 24
    assert items[1][16:] == b"abc" and items[2][16:] == b"defgh"


def test_truncated_last_packet_is_dropped():
    data = pcap(b"abc", b"defgh")[:-2]
    assert len(list(_pcap_records(io.BytesIO(data)))) == 2


def test_valid_filter_is_kept_and_empty_filter_means_everything():
    assert check_filter(" icmp or arp ") == "icmp or arp"
    assert check_filter("") == ""


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("icmp and and", "bad capture filter"),
        ("$(reboot)", "bad capture filter"),
        ("-w /etc/passwd", "must not start with '-'"),
        ("icmp\nor arp", "printable ASCII"),
        ("x" * 2000, "longer than 1024"),
    ],
)
def test_bad_filter_is_refused(expression, message):
    with pytest.raises(CaptureError, match=message):
        check_filter(expression)


@pytest.mark.parametrize(
    "bounds", [{"seconds": 0}, {"seconds": 7200}, {"packets": 0}, {"bytes": 3 * 1024**3}]
)
def test_capture_bounds_have_limits(bounds):
    with pytest.raises(CaptureError):
        CaptureBounds(**bounds)
