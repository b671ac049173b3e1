import pytest

from kiln.versions import Version, VersionRange


def v(text):
    return Version.parse(text)


@pytest.mark.parametrize(
    "spec, inside, outside",
    [
        ("@7.4:8.0", ["7.4.0", "7.4.33", "8.0.30"], ["7.3.33", "8.1.0", "8.2.32"]),
        ("@8:", ["8.0.0", "8.2.32", "9.1"], ["7.4.33"]),
        ("@8.0:", ["8.0.30", "8.4.1"], ["7.4.32"]),
        ("@:7.4", ["7.3.1", "7.4.33"], ["8.0.0"]),
        ("@8.2", ["8.2.0", "8.2.32"], ["8.1.29", "8.3.8"]),
        ("@8.2.32", ["8.2.32"], ["8.2.20", "8.2.33"]),
        ("@:", ["7.4.33", "8.4.1"], []),
        ("@8.1:8.2.20", ["8.1.29", "8.2.20"], ["8.2.32", "8.0.30"]),
    ],
)
def test_range_membership(spec, inside, outside):
    r = VersionRange.parse(spec)
    for text in inside:
        assert v(text) in r, (spec, text)
    for text in outside:
        assert v(text) not in r, (spec, text)


@pytest.mark.parametrize("bad", ["8.0:", "@8.x", "@1:2:3", "@9:8", "@"])
def test_bad_ranges_are_refused(bad):
    with pytest.raises(ValueError):
        VersionRange.parse(bad)


def test_versions_order_numerically():
    assert v("8.10.0") > v("8.9.9")
    assert sorted([v("8.2.32"), v("7.4.33"), v("8.2.20")]) == [v("7.4.33"), v("8.2.20"), v("8.2.32")]
