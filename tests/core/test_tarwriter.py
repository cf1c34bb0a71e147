"""Tar layers: kit's golden bytes, Go's header encoding rules, and write/read round trips."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kitflow.errors import KitflowError
from kitflow.format.ignore import IgnorePaths
from kitflow.format.tarwriter import (
    TarWriter,
    go_rel,
    same_dir_tree,
    split_ustar_path,
    tar_header,
    walk_layer,
    write_layer_tar,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "generated"


def materialise_context(dest: Path) -> dict[str, object]:
    """Create the golden context of context.json under ``dest`` with exact modes."""
    spec = json.loads((DATA / "context.json").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, int(spec["contextRootMode"], 8))
    for item in spec["files"]:
        path = dest / item["path"]
        if item["type"] == "directory":
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(item["content"].encode("utf-8"))
        os.chmod(path, int(item["mode"], 8))
    return spec


LAYERS = [("model", "model.tar"), ("data/train.csv", "dataset.tar"), ("README.md", "docs.tar")]


@pytest.mark.parametrize(("layer_path", "vector"), LAYERS)
def test_golden_layers(tmp_path: Path, layer_path: str, vector: str) -> None:
    materialise_context(tmp_path / "ctx")
    ignore = IgnorePaths.from_context(tmp_path / "ctx", [p for p, _ in LAYERS])
    out = io.BytesIO()
    write_layer_tar(tmp_path / "ctx", layer_path, ignore, out)
    assert out.getvalue() == (DATA / vector).read_bytes()


def test_golden_digests_match_context_json(tmp_path: Path) -> None:
    spec = materialise_context(tmp_path / "ctx")
    expected = spec["expected"]
    ignore = IgnorePaths.from_context(tmp_path / "ctx", [p for p, _ in LAYERS])
    text = json.dumps(expected)
    for layer_path, _ in LAYERS:
        out = io.BytesIO()
        write_layer_tar(tmp_path / "ctx", layer_path, ignore, out)
        assert hashlib.sha256(out.getvalue()).hexdigest() in text


def test_entry_names(tmp_path: Path) -> None:
    materialise_context(tmp_path / "ctx")
    ignore = IgnorePaths.from_context(tmp_path / "ctx", [p for p, _ in LAYERS])
    names = [e.name for e in walk_layer(tmp_path / "ctx", "./data/train.csv", ignore)]
    assert names == ["data", "data/train.csv"]


def test_header_fields_match_go() -> None:
    header = tar_header("model/weights.bin", 0o644, 14, b"0")
    assert len(header) == 512
    assert header[100:108] == b"0000644\0"
    assert header[108:116] == b"0001750\0"
    assert header[116:124] == b"0000000\0"
    assert header[124:136] == b"00000000016\0"
    assert header[136:148] == b"00000000000\0"
    assert header[154:156] == b"\0 "
    assert header[257:265] == b"ustar\x0000"
    assert header[329:345] == b"0000000\x000000000\0"
    assert sum(header[:148]) + 8 * 32 + sum(header[156:]) == int(header[148:154], 8)


def test_ustar_split_for_147_byte_path() -> None:
    name = "d" * 40 + "/" + "e" * 40 + "/" + "f" * 65
    assert len(name) == 147
    assert split_ustar_path(name.encode()) == (b"d" * 40 + b"/" + b"e" * 40, b"f" * 65)
    header = tar_header(name, 0o644, 0, b"0")
    assert len(header) == 512
    assert header[345:426].rstrip(b"\0") == b"d" * 40 + b"/" + b"e" * 40
    assert header[:100].rstrip(b"\0") == b"f" * 65


def test_pax_for_unsplittable_and_non_ascii_names() -> None:
    long_name = "x" * 125
    data = tar_header(long_name, 0o644, 3, b"0")
    assert len(data) == 3 * 512  # PAX header, its records, the main header
    assert data[:100].rstrip(b"\0") == b"PaxHeaders.0/" + b"x" * 87
    assert data[156:157] == b"x"
    assert data[329:345] == b"\0" * 16  # Go leaves devmajor/devminor empty in the PAX block
    assert data[512:1024].rstrip(b"\0") == b"135 path=" + b"x" * 125 + b"\n"
    assert data[1024:1124].rstrip(b"\0") == b"x" * 100
    accented = tar_header("dir/caf\u00e9.txt", 0o644, 0, b"0")
    assert accented[:100].rstrip(b"\0") == b"dir/PaxHeaders.0/caf.txt"
    assert b"path=dir/caf\xc3\xa9.txt\n" in accented[512:1024]
    assert accented[1024:1124].rstrip(b"\0") == b"dir/caf.txt"


def test_dotdot_substring_quirk(tmp_path: Path) -> None:
    """Like kit, a name containing ``..`` outside the layer path is not in a ``.`` layer."""
    (tmp_path / "a..b").write_text("x")
    (tmp_path / "ok").write_text("y")
    names = [e.name for e in walk_layer(tmp_path, ".", IgnorePaths.create([], ["."]))]
    assert names == ["ok"]


def test_go_rel_and_same_dir_tree() -> None:
    assert go_rel("data/train.csv", "data") == ".."
    assert go_rel("data", "data/train.csv") == "train.csv"
    assert go_rel("model", "data") == "../data"
    assert go_rel(".", "x/y") == "x/y"
    assert same_dir_tree("data/train.csv", "data")
    assert not same_dir_tree("data/train.csv", "data/unused.csv")
    assert not same_dir_tree("model", "other")
    assert same_dir_tree(".", "anything/below")


def test_file_changing_size_is_an_error() -> None:
    writer = TarWriter(io.BytesIO())
    with pytest.raises(KitflowError, match="shrank"):
        writer.add_file("a", 0o644, 10, io.BytesIO(b"short"))
    writer = TarWriter(io.BytesIO())
    with pytest.raises(KitflowError, match="grew"):
        writer.add_file("a", 0o644, 2, io.BytesIO(b"longer"))


def test_symlinks_are_skipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "m").mkdir(parents=True)
    (ctx / "m" / "real.bin").write_bytes(b"x")
    os.symlink("real.bin", ctx / "m" / "link.bin")
    ignore = IgnorePaths.from_context(ctx, ["m"])
    with caplog.at_level("WARNING", logger="kitflow.pack"):
        names = [e.name for e in walk_layer(ctx, "m", ignore)]
    assert names == ["m", "m/real.bin"]
    assert "Skipping symlink m/link.bin" in caplog.text


def test_missing_layer_path(tmp_path: Path) -> None:
    with pytest.raises(KitflowError, match="path nope does not exist"):
        list(walk_layer(tmp_path, "nope", IgnorePaths.create([], ["nope"])))


def test_byte_order_walk_and_modes(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "code" / "sub").mkdir(parents=True)
    for name in ["b-lower.txt", "B-upper.txt", "a.txt", "sub/z.py"]:
        (ctx / "code" / name).write_text(name)
    os.chmod(ctx / "code" / "a.txt", 0o755)
    os.chmod(ctx / "code", 0o750)
    buf = io.BytesIO()
    write_layer_tar(ctx, "code", IgnorePaths.create([], ["code"]), buf)
    data = buf.getvalue()
    assert len(data) % 512 == 0 and data.endswith(bytes(1024))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = tf.getmembers()
    assert [m.name for m in members] == [
        "code",
        "code/B-upper.txt",
        "code/a.txt",
        "code/b-lower.txt",
        "code/sub",
        "code/sub/z.py",
    ]
    modes = {m.name: m.mode for m in members}
    assert modes["code"] == 0o750 and modes["code/a.txt"] == 0o755
    assert all(m.uid == 1000 and m.gid == 0 and m.mtime == 0 for m in members)


_name_part = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x24F, exclude_characters="/\\"),
    min_size=1,
    max_size=60,
).filter(lambda s: s not in (".", ".."))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.dictionaries(
        st.lists(_name_part, min_size=1, max_size=4).map("/".join),
        st.tuples(st.binary(max_size=3000), st.sampled_from([0o644, 0o600, 0o755, 0o4755])),
        min_size=1,
        max_size=6,
    )
)
def test_roundtrip_with_tarfile(files: dict[str, tuple[bytes, int]]) -> None:
    buf = io.BytesIO()
    writer = TarWriter(buf, chunk=1024)
    for name, (content, mode) in files.items():
        writer.add_file(name, mode, len(content), io.BytesIO(content))
    writer.add_directory("some/dir", 0o755)
    writer.close()
    data = buf.getvalue()
    assert len(data) % 512 == 0 and data.endswith(bytes(1024))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        seen = {}
        for member in tf.getmembers():
            if member.isdir():
                assert member.name == "some/dir" and member.mode == 0o755
                continue
            extracted = tf.extractfile(member)
            assert extracted is not None
            seen[member.name] = (extracted.read(), member.mode)
    assert seen == files


def test_truncated_pax_name_never_ends_in_slash() -> None:
    """Go writes NUL over the first of the trailing slashes of a truncated V7 name."""
    name = "\u00e9" + "a" * 98 + "//" + "x" * 10  # non-ASCII: PAX; ASCII form is 110 bytes
    main = tar_header(name, 0o644, 0, b"0")[-512:]
    assert main[:100] == b"a" * 98 + b"\0/"


# Names containing ".." are left out: kit's sameDirTree drops them (its substring test).
_tree_part = st.text(alphabet="abcAB_-.0", min_size=1, max_size=8).filter(
    lambda s: ".." not in s and s != "." and s.lower() not in ("kitfile", ".kitfile")
)


@settings(max_examples=30, deadline=None)
@given(
    tree=st.dictionaries(
        st.lists(_tree_part, min_size=1, max_size=3).map("/".join),
        st.binary(max_size=600),
        min_size=1,
        max_size=8,
    )
)
def test_walked_layer_reads_back_as_the_directory(tree: dict[str, bytes]) -> None:
    """Any directory tree packed as layer ``.`` reads back (tarfile) as exactly its files."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ctx = Path(tmp)
        written: dict[str, bytes] = {}
        for rel, content in tree.items():
            path = ctx / rel
            if any(p.is_file() for p in [*path.parents][: len(Path(rel).parts) - 1]):
                continue  # a parent is already a file
            if path.is_dir():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            written[rel] = content
        buf = io.BytesIO()
        write_layer_tar(ctx, ".", IgnorePaths.create([], ["."]), buf)
        with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
            files = {}
            names = []
            for member in tf.getmembers():
                names.append(member.name)
                if member.isfile():
                    extracted = tf.extractfile(member)
                    assert extracted is not None
                    files[member.name] = extracted.read()
        assert files == written
        assert names == sorted(names, key=lambda n: n.encode().split(b"/"))


def test_pax_size_record_for_files_of_8_gib_and_more() -> None:
    size = 9 * 1024**3
    data = tar_header("model/huge.bin", 0o644, size, b"0")
    assert len(data) == 3 * 512
    assert data[:100].rstrip(b"\0") == b"model/PaxHeaders.0/huge.bin"
    assert data[512:1024].rstrip(b"\0") == b"19 size=9663676416\n"
    main = data[1024:]
    assert main[:100].rstrip(b"\0") == b"model/huge.bin"
    assert main[124:136] == b"00000000000\0"  # Go writes 0 when the size does not fit
    just_below = tar_header("model/big.bin", 0o644, 8**11 - 1, b"0")
    assert len(just_below) == 512 and just_below[124:136] == b"77777777777\0"
