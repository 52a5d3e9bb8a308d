"""The `/train` dataset reader: pictures, zips and captions in; a checked Dataset or a polite refusal out."""

from __future__ import annotations

import io
import stat
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

from commands.frame.errors import UserError
from commands.frame.types import Attachment
from commands.training import data as training_data
from commands.training.data import DatasetLimits, read_dataset

LIMITS = DatasetLimits(min_images=3, max_images=40, max_file_bytes=2_000_000, max_zip_bytes=1_000_000, max_pixels=10_000_000)


def picture(shade: int, size: tuple[int, int] = (32, 24), fmt: str = "PNG", mode: str = "RGB") -> bytes:
    color = (shade, 255 - shade, (shade * 7) % 256) + ((255,) if mode == "RGBA" else ())
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format=fmt)
    return out.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A 1-bit grey PNG that claims width x height, with no real pixel data (tiny as a file)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def refusal(attachments: list[Attachment], limits: DatasetLimits = LIMITS) -> str:
    with pytest.raises(UserError) as caught:
        read_dataset(attachments, limits)
    return caught.value.message


def test_module_stays_torch_free():
    import subprocess

    code = "import sys, commands.training.data; sys.exit(any(m in sys.modules for m in ('torch', 'diffusers')))"
    assert subprocess.run([sys.executable, "-c", code], check=False, cwd=Path(__file__).parents[1]).returncode == 0


def test_attachments_with_top_level_sidecars():
    dataset = read_dataset(
        [
            Attachment("Cat.png", picture(10)),
            Attachment("dog.jpg", picture(80, fmt="JPEG")),
            Attachment("bird.webp", picture(160, fmt="WEBP")),
            Attachment("photo", picture(200, fmt="BMP"), "image/bmp"),  # no suffix: the content type says picture
            Attachment("cat.TXT", b"  a  ginger\n cat \t on a mat \n"),
            Attachment("DOG.caption", "\ufeffa dog".encode()),
        ],
        LIMITS,
    )
    assert [image.filename for image in dataset.images] == ["Cat.png", "dog.jpg", "bird.webp", "photo"]
    assert [image.caption for image in dataset.images] == ["a ginger cat on a mat", "a dog", None, None]
    first = dataset.images[0]
    assert (first.width, first.height) == (32, 24)
    with Image.open(io.BytesIO(first.png)) as decoded:
        assert decoded.format == "PNG" and decoded.mode == "RGB" and decoded.size == (32, 24)
    assert dataset.notes == ()


def test_zip_with_sidecars_in_folders_and_litter_skipped():
    archive = make_zip(
        {
            "set/": b"",
            "set/a.png": picture(1),
            "set/a.txt": b"first",
            "set/sub/b.png": picture(2),
            "set/sub/b.caption": b"second",
            "set/c.png": picture(3),
            "set/sub/c.txt": b"a caption in another folder than c.png",
            "__MACOSX/set/._a.png": b"\0\5\26\7junk",
            "set/.DS_Store": b"junk",
            "set/readme.md": b"# hello",
        }
    )
    dataset = read_dataset([Attachment("pics.zip", archive)], LIMITS)
    assert {image.filename: image.caption for image in dataset.images} == {
        "set/a.png": "first",
        "set/sub/b.png": "second",
        "set/c.png": None,
    }
    assert len(dataset.notes) == 2
    assert "`set/readme.md` in `pics.zip`" in dataset.notes[0]
    assert "`set/sub/c.txt` in `pics.zip`" in dataset.notes[1] and "no picture named `c`" in dataset.notes[1]


def test_top_level_sidecar_does_not_caption_a_zip_member():
    archive = make_zip({"a.png": picture(1), "b.png": picture(2), "c.png": picture(3)})
    dataset = read_dataset([Attachment("pics.zip", archive), Attachment("a.txt", b"top")], LIMITS)
    assert [image.caption for image in dataset.images] == [None, None, None]
    assert dataset.notes == ("Ignored `a.txt`: there is no picture named `a` next to it.",)


def test_exif_rotation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    out = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 30, 30)).save(out, format="JPEG", exif=exif)
    pictures = [Attachment("rotated.jpg", out.getvalue()), Attachment("b.png", picture(5)), Attachment("c.png", picture(9))]
    rotated = read_dataset(pictures, LIMITS).images[0]
    assert (rotated.width, rotated.height) == (20, 40)
    with Image.open(io.BytesIO(rotated.png)) as decoded:
        assert decoded.size == (20, 40)
        assert decoded.getexif().get(0x0112) in (None, 1)


def test_transparency_is_flattened_onto_white():
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    pictures = [Attachment("alpha.png", out.getvalue()), Attachment("b.png", picture(5)), Attachment("c.png", picture(9))]
    first = read_dataset(pictures, LIMITS).images[0]
    with Image.open(io.BytesIO(first.png)) as decoded:
        assert decoded.mode == "RGB"
        assert decoded.getpixel((0, 0)) == (255, 255, 255)
        assert decoded.getpixel((1, 1)) == (255, 0, 0)


def test_duplicates_are_dropped_with_one_note():
    same = picture(42)
    resaved = io.BytesIO()
    Image.open(io.BytesIO(same)).save(resaved, format="BMP")  # other bytes, same pixels
    dataset = read_dataset(
        [
            Attachment("a.png", same),
            Attachment("b.png", picture(1)),
            Attachment("a-copy.bmp", resaved.getvalue()),
            Attachment("c.png", picture(2)),
            Attachment("a-again.png", same),
        ],
        LIMITS,
    )
    assert [image.filename for image in dataset.images] == ["a.png", "b.png", "c.png"]
    assert len(dataset.notes) == 1
    assert "2 duplicate pictures" in dataset.notes[0]
    assert "`a-copy.bmp` (same as `a.png`)" in dataset.notes[0] and "`a-again.png`" in dataset.notes[0]


def test_no_pictures():
    assert refusal([Attachment("cat.txt", b"a cat")]) == (
        "I found no pictures in what you sent; attach 3–40 pictures (or a .zip of them) to `/train`."
    )
    assert "no pictures" in refusal([])


def test_too_few_pictures_counts_after_duplicates():
    message = refusal([Attachment("a.png", picture(1)), Attachment("b.png", picture(1)), Attachment("c.png", picture(2))])
    assert "found 2 pictures" in message and "after dropping 1 duplicate" in message and "at least 3" in message


def test_too_many_pictures():
    limits = DatasetLimits(min_images=1, max_images=4, max_file_bytes=2_000_000, max_zip_bytes=1_000_000, max_pixels=10_000_000)
    assert len(read_dataset([Attachment(f"{i}.png", picture(i)) for i in range(4)], limits).images) == 4
    message = refusal([Attachment(f"{i}.png", picture(i)) for i in range(5)], limits)
    assert "more than 4 different pictures" in message and "limit is 4" in message


def test_text_named_png_is_refused():
    message = refusal([Attachment("a.png", picture(1)), Attachment("cat.png", b"just some text, honest")])
    assert message.startswith("`cat.png` is not a picture I can read (")


def test_pdf_is_refused():
    message = refusal([Attachment("a.png", picture(1)), Attachment("notes.pdf", b"%PDF-1.7\n", "application/pdf")])
    assert message.startswith("`notes.pdf` is not a picture I can read")


def test_tiff_is_refused():
    message = refusal([Attachment("scan.png", picture(1, fmt="TIFF"))])
    assert "`scan.png` is not a picture I can read" in message


def test_gif_first_frame_is_accepted():
    frames = [Image.new("RGB", (16, 16), color) for color in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    pictures = [Attachment("anim.gif", out.getvalue()), Attachment("b.png", picture(5)), Attachment("c.png", picture(9))]
    with Image.open(io.BytesIO(read_dataset(pictures, LIMITS).images[0].png)) as decoded:
        assert decoded.getpixel((4, 4)) == (255, 0, 0)


def test_file_over_size_limit():
    limits = DatasetLimits(3, 40, max_file_bytes=1000, max_zip_bytes=1_000_000, max_pixels=10_000_000)
    message = refusal([Attachment("big.bmp", picture(1, size=(100, 100), fmt="BMP"))], limits)
    assert "`big.bmp`" in message and "up to 1000 bytes" in message


def test_caption_rules():
    pictures = [Attachment("a.png", picture(1)), Attachment("b.png", picture(2)), Attachment("c.png", picture(3))]
    assert "`a.txt` is not UTF-8" in refusal([*pictures, Attachment("a.txt", b"\xff\xfe caf\xe9")])
    long = ("word " * 300).encode()
    assert "`a.txt` is 1499 characters long" in refusal([*pictures, Attachment("a.txt", long)])
    both = refusal([*pictures, Attachment("a.txt", b"x"), Attachment("A.caption", b"y")])
    assert "`a.txt` and `A.caption` both caption" in both
    exact = ("x" * training_data.MAX_CAPTION_CHARS).encode()
    assert read_dataset([*pictures, Attachment("a.txt", exact)], LIMITS).images[0].caption == exact.decode()


@pytest.mark.parametrize("member", ["../evil.png", "set/../../evil.png", "..\\evil.png", "/etc/evil.png", "C:/evil.png", "C:\\evil.png"])
def test_zip_paths_outside_the_zip_are_refused(member):
    # zipfile's writer would clean some of these names, so write the hostile name byte for byte.
    message = refusal([Attachment("pics.zip", _zip_with_raw_name(member, picture(2)))])
    assert "`pics.zip`" in message and "points outside the zip" in message


def _zip_with_raw_name(member: str, payload: bytes) -> bytes:
    """A stored zip with one member whose name is written byte for byte (no cleaning by ZipInfo)."""
    name = member.encode()
    crc = zlib.crc32(payload)
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, len(payload), len(payload), len(name), 0)
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, len(payload), len(payload), len(name), 0, 0, 0, 0, 0, 0
    )
    body = local + name + payload
    directory = central + name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(directory), len(body), 0)
    return body + directory + end


def test_raw_zip_helper_keeps_hostile_names():
    with zipfile.ZipFile(io.BytesIO(_zip_with_raw_name("../evil.png", b"x"))) as archive:
        assert archive.namelist() == ["../evil.png"]


def test_symlink_member_is_refused():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        info = zipfile.ZipInfo("link.png")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    message = refusal([Attachment("pics.zip", out.getvalue())])
    assert "`pics.zip` contains `link.png`, a symbolic link" in message


def test_encrypted_member_is_refused():
    data = bytearray(make_zip({"a.png": picture(1)}))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # general-purpose flag, bit 0
        at = data.index(signature) + offset
        data[at] |= 0x1
    assert "`pics.zip` is password-protected" in refusal([Attachment("pics.zip", bytes(data))])


def test_zip_bomb_by_declared_size():
    bomb = make_zip({"zeros.png": b"\0" * 5_000_000})
    assert len(bomb) < 20_000
    limits = DatasetLimits(3, 40, max_file_bytes=10_000_000, max_zip_bytes=1_000_000, max_pixels=10_000_000)
    message = refusal([Attachment("bomb.zip", bomb)], limits)
    assert "`bomb.zip` unpacks to 4.8 MiB" in message and "at most 977 KiB" in message


def test_declared_sizes_count_across_zips():
    one = make_zip({f"{i}.png": picture(i, size=(200, 200), fmt="BMP") for i in range(5)})  # ~600 KB unpacked
    two = make_zip({f"{i}.png": picture(i + 10, size=(200, 200), fmt="BMP") for i in range(5)})
    message = refusal([Attachment("one.zip", one), Attachment("two.zip", two)])
    assert "`two.zip` unpacks to" in message


def test_member_over_file_limit():
    limits = DatasetLimits(3, 40, max_file_bytes=100_000, max_zip_bytes=1_000_000, max_pixels=10_000_000)
    message = refusal([Attachment("pics.zip", make_zip({"big.png": b"\0" * 200_000}))], limits)
    assert "`big.png` in `pics.zip` is larger than 98 KiB" in message


def test_lying_header_is_not_trusted():
    # Claim 100 bytes for a member that really inflates to 5 MB: zipfile stops at the claimed size
    # and the CRC no longer matches, so the member is refused as damaged and never fully inflated.
    data = bytearray(make_zip({"zeros.png": b"\0" * 5_000_000}))
    central = data.index(b"PK\x01\x02")
    data[central + 24 : central + 28] = struct.pack("<I", 100)  # uncompressed size in the central directory
    local = data.index(b"PK\x03\x04")
    data[local + 22 : local + 26] = struct.pack("<I", 100)
    message = refusal([Attachment("liar.zip", bytes(data))])
    assert "I can't unpack `zeros.png` in `liar.zip`" in message


def test_bounded_read_stops_at_the_running_total(monkeypatch):
    # The declared-size check is the first line; pretend a header got past it (claims 0 bytes) so the
    # bounded read alone must stop the unpacking once all members together pass max_zip_bytes.
    monkeypatch.setattr(training_data, "_declared_size", lambda info: 0)
    limits = DatasetLimits(3, 40, max_file_bytes=500_000, max_zip_bytes=1_000_000, max_pixels=10_000_000)
    archive = make_zip({f"{i}.png": bytes([i]) * 400_000 for i in range(4)})
    message = refusal([Attachment("many.zip", archive)], limits)
    assert "`many.zip` unpacks to more than 977 KiB" in message
    big = make_zip({"big.png": b"\0" * 600_000})
    assert "`big.png` in `big.zip` is larger than" in refusal([Attachment("big.zip", big)], limits)


def test_nested_archives_are_refused():
    inner = make_zip({"a.png": picture(1)})
    by_name = refusal([Attachment("outer.zip", make_zip({"inner.zip": inner}))])
    assert "`inner.zip` in `outer.zip` is another archive" in by_name
    by_bytes = refusal([Attachment("outer.zip", make_zip({"a.png": picture(1), "sneaky.png": inner}))])
    assert "`sneaky.png` in `outer.zip` is another archive" in by_bytes


def test_too_many_zip_entries():
    limits = DatasetLimits(1, 2, max_file_bytes=2_000_000, max_zip_bytes=1_000_000, max_pixels=10_000_000)
    cap = training_data.max_zip_members(limits)
    assert cap == training_data.ZIP_MEMBERS_PER_PICTURE * 2 + training_data.ZIP_MEMBERS_SLACK
    archive = make_zip({f"dir{i}/": b"" for i in range(cap + 1)})
    assert f"`pics.zip` has {cap + 1} entries; I take at most {cap}" in refusal([Attachment("pics.zip", archive)], limits)


def test_broken_zip():
    message = refusal([Attachment("pics.zip", b"PK\x03\x04 this is not really a zip")])
    assert message.startswith("`pics.zip` is not a zip file I can open")


def test_pixel_bomb_past_pillows_own_limit():
    bomb = png_header_only(20_000, 20_000)  # 400 megapixels claimed, a few bytes on disk
    assert len(bomb) < 200
    message = refusal([Attachment("bomb.png", bomb)])
    assert "`bomb.png` has too many pixels" in message and "10 megapixels" in message


def test_pixel_limit_checked_before_decoding():
    # 25 megapixels: under Pillow's own limit, over ours. The pixel data is missing, so decoding
    # would fail with "not a picture": the size message proves the header was checked first.
    message = refusal([Attachment("big.png", png_header_only(5000, 5000))])
    assert "`big.png` is 5000x5000 (25.0 megapixels); the limit is 10 megapixels" in message


def test_pillow_bomb_warning_is_a_refusal(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x40 = 1600: a warning, not Pillow's error
    message = refusal([Attachment("warned.png", picture(1, size=(40, 40)))])
    assert "`warned.png` has too many pixels" in message
