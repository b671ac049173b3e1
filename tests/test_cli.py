"""What a user sees at the command line for bad input: one line, the fix, a non-zero exit."""
import pytest

from doit_run import plain


@pytest.mark.parametrize(
    "target, expected",
    [
        ("php:9.9.9", "kiln: unknown php version '9.9.9': known versions are 7.4.32, 7.4.33, 8.0.30"),
        ("php_make:8.2.99", "kiln: unknown php version '8.2.99'"),
        ("php:8.2.32-nope", "kiln: unknown php flavour 'nope': known flavours are default"),
    ],
)
def test_unknown_builds_are_one_line_errors(target, expected):
    result = plain(target)
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stdout + result.stderr


def test_globs_select_builds_without_complaint():
    # Only 7.4.33 matches, and the local mirror (scripts/setup) holds it.
    result = plain("php_download:7.4.33*", env={"KILN_IMAGES": "off"})
    assert result.returncode == 0, result.stderr
    assert "php_download:7.4.33" in result.stdout


def test_the_whole_recipe_is_listed():
    listing = plain("list", "--all").stdout
    for version in ("7.4.32", "7.4.33", "8.0.30", "8.1.29", "8.2.20", "8.2.32", "8.3.8", "8.4.1"):
        for stage in ("php", "php_download", "php_patch", "php_make", "php_smoke"):
            assert f"{stage}:{version} " in listing, (stage, version)


def test_a_malformed_recipe_stops_every_command(tmp_path, monkeypatch):
    from kiln import recipe
    path = recipe.LANGUAGES / "php" / "recipe.toml"
    original = path.read_text()
    try:
        path.write_text(original.replace('"8.3.8" = "aea3', '"8.3.8" = "zzz', 1))
        result = plain("list")
    finally:
        path.write_text(original)
    assert result.returncode == 2
    assert "recipe.toml:" in result.stderr and "sha256 of 8.3.8 must be 64" in result.stderr
