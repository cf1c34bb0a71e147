"""The layer extractor: kit's overwrite rules, hostile archives refused, corrupt blobs detected,
and nothing half-written when a layer is refused."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from kitflow.errors import DigestMismatchError, KitflowError
from kitflow.format.tarreader import UnsafeArchiveError, extract_raw, extract_tar

_UMASK = os.umask(0)
os.umask(_UMASK)


def make_tar(entries: list[tuple]) -> bytes:
    """entries: (name, kind, payload) with kind in file/dir/symlink/hardlink/fifo/chr."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for entry in entries:
            name, kind = entry[0], entry[1]
            payload = entry[2] if len(entry) > 2 else b""
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                info.mode = entry[3] if len(entry) > 3 else 0o644
                tf.addfile(info, io.BytesIO(payload))
                continue
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = payload.decode()
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = payload.decode()
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
            tf.addfile(info)
    return buf.getvalue()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def run(blob: bytes, root: Path, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("digest", digest_of(blob))
    kw.setdefault("size", len(blob))
    return extract_tar(io.BytesIO(blob), root, **kw)


def tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


def test_extracts_dirs_and_files_with_header_modes(tmp_path: Path) -> None:
    blob = make_tar(
        [
            ("model", "dir"),
            ("model/weights.bin", "file", b"w" * 3000, 0o644),
            ("model/run.sh", "file", b"#!/bin/sh\n", 0o755),
        ]
    )
    stats = run(blob, tmp_path / "out", layer_path="model")
    root = tmp_path / "out"
    assert (root / "model/weights.bin").read_bytes() == b"w" * 3000
    assert stat.S_IMODE((root / "model/run.sh").stat().st_mode) & 0o100
    assert stats.files == 2 and stats.bytes_written == 3010
    assert sorted(os.listdir(root)) == ["model"]  # no staging directory left behind


@pytest.mark.parametrize(
    "name", ["../evil.txt", "/etc/evil.txt", "model/../../evil.txt", "model/../../../tmp/evil"]
)
def test_refuses_escaping_names(tmp_path: Path, name: str) -> None:
    blob = make_tar([("model", "dir"), ("model/ok.txt", "file", b"ok"), (name, "file", b"bad")])
    root = tmp_path / "a" / "out"
    with pytest.raises(UnsafeArchiveError, match="illegal file path"):
        run(blob, root)
    assert not (tmp_path / "a" / "evil.txt").exists()
    assert tree(root) == {}  # all or nothing: not even the valid entry was placed


@pytest.mark.parametrize(
    ("kind", "payload", "word"),
    [
        ("symlink", b"/etc/passwd", "symbolic link"),
        ("hardlink", b"model/ok.txt", "hard link"),
        ("fifo", b"", "FIFO"),
        ("chr", b"", "character device"),
    ],
)
def test_refuses_links_and_devices(tmp_path: Path, kind: str, payload: bytes, word: str) -> None:
    blob = make_tar([("model", "dir"), ("model/ok.txt", "file", b"ok"), ("model/x", kind, payload)])
    with pytest.raises(UnsafeArchiveError, match=word):
        run(blob, tmp_path)
    assert tree(tmp_path) == {}


def test_refuses_entries_outside_layer_path(tmp_path: Path) -> None:
    blob = make_tar([("data", "dir"), ("data/train.csv", "file", b"1"), ("code/x.py", "file", b"")])
    with pytest.raises(
        UnsafeArchiveError, match=r"outside the layer's declared path 'data/train\.csv'"
    ):
        run(blob, tmp_path, layer_path="data/train.csv")
    assert tree(tmp_path) == {}
    # ancestors of the layer path are fine as directories, not as files
    ok = make_tar([("data", "dir"), ("data/train.csv", "file", b"1")])
    run(ok, tmp_path, layer_path="./data/train.csv")
    assert (tmp_path / "data/train.csv").read_bytes() == b"1"
    bad = make_tar([("data", "file", b"not a dir")])
    with pytest.raises(UnsafeArchiveError):
        run(bad, tmp_path / "2", layer_path="data/train.csv")


def test_refuses_existing_symlink_leading_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "model").symlink_to(outside)
    blob = make_tar([("model", "dir"), ("model/w.bin", "file", b"x")])
    with pytest.raises(UnsafeArchiveError, match="symlink leads outside"):
        run(blob, root)
    assert list(outside.iterdir()) == []


def test_existing_file_rules(tmp_path: Path) -> None:
    blob = make_tar([("docs", "dir"), ("docs/README.md", "file", b"new")])
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/README.md").write_bytes(b"old")
    with pytest.raises(KitflowError, match=r"path 'docs/README\.md' already exists"):
        run(blob, tmp_path)
    assert (tmp_path / "docs/README.md").read_bytes() == b"old"
    stats = run(blob, tmp_path, ignore_existing=True)
    assert stats.skipped == 1 and (tmp_path / "docs/README.md").read_bytes() == b"old"
    run(blob, tmp_path, overwrite=True)
    assert (tmp_path / "docs/README.md").read_bytes() == b"new"


def test_existing_wrong_types(tmp_path: Path) -> None:
    (tmp_path / "docs").write_bytes(b"a file where a dir should be")
    blob = make_tar([("docs", "dir"), ("docs/README.md", "file", b"new")])
    with pytest.raises(KitflowError, match="path 'docs' already exists and is not a directory"):
        run(blob, tmp_path, overwrite=True)
    (tmp_path / "docs").unlink()
    (tmp_path / "docs/README.md").mkdir(parents=True)
    with pytest.raises(KitflowError, match="already exists and is not a regular file"):
        run(blob, tmp_path, overwrite=True)


def test_corrupt_blob_writes_nothing(tmp_path: Path) -> None:
    blob = make_tar([("model", "dir"), ("model/w.bin", "file", b"x" * 5000)])
    bad = bytearray(blob)
    bad[1024] ^= 0xFF  # flip a content byte: the tar still parses
    with pytest.raises(DigestMismatchError):
        extract_tar(io.BytesIO(bytes(bad)), tmp_path, digest=digest_of(blob), size=len(blob))
    assert tree(tmp_path) == {}


def test_truncated_blob_writes_nothing(tmp_path: Path) -> None:
    blob = make_tar([("model", "dir"), ("model/w.bin", "file", b"x" * 5000)])
    with pytest.raises(DigestMismatchError):
        extract_tar(io.BytesIO(blob[:2000]), tmp_path, digest=digest_of(blob), size=len(blob))
    assert tree(tmp_path) == {}


def test_oversized_blob_is_cut_off(tmp_path: Path) -> None:
    blob = make_tar([("a.txt", "file", b"a")])
    with pytest.raises(DigestMismatchError, match="larger than its descriptor"):
        extract_tar(
            io.BytesIO(blob + b"\0" * 4096), tmp_path, digest=digest_of(blob), size=len(blob)
        )


def test_garbage_is_a_clear_error(tmp_path: Path) -> None:
    junk = b"this is not a tar archive at all" * 40
    with pytest.raises(KitflowError, match="not a valid archive"):
        run(junk, tmp_path)
    assert tree(tmp_path) == {}


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compressed_layers(tmp_path: Path, compression: str) -> None:
    plain = make_tar([("code", "dir"), ("code/a.py", "file", b"print(1)\n")])
    blob = gzip.compress(plain) if compression == "gzip" else zstandard.compress(plain)
    run(blob, tmp_path, compression=compression, layer_path="code")
    assert (tmp_path / "code/a.py").read_bytes() == b"print(1)\n"


def test_legacy_prefix(tmp_path: Path) -> None:
    blob = make_tar([("weights", "dir"), ("weights/w.bin", "file", b"w")])
    run(blob, tmp_path, prefix="models", layer_path="models/weights")
    assert (tmp_path / "models/weights/w.bin").read_bytes() == b"w"


def test_raw_layer(tmp_path: Path) -> None:
    data = b"\x00raw model bytes" * 100
    stats = extract_raw(
        io.BytesIO(data),
        tmp_path,
        "models/m.gguf",
        mode=0o600,
        digest=digest_of(data),
        size=len(data),
    )
    assert (tmp_path / "models/m.gguf").read_bytes() == data
    assert stat.S_IMODE((tmp_path / "models/m.gguf").stat().st_mode) == 0o600
    assert stats.files == 1
    with pytest.raises(KitflowError, match="already exists"):
        extract_raw(io.BytesIO(data), tmp_path, "models/m.gguf")
    with pytest.raises(DigestMismatchError):
        extract_raw(
            io.BytesIO(data[:-1] + b"!"),
            tmp_path / "x",
            "m.gguf",
            digest=digest_of(data),
            size=len(data),
        )
    assert not (tmp_path / "x" / "m.gguf").exists()
    with pytest.raises(UnsafeArchiveError):
        extract_raw(io.BytesIO(data), tmp_path, "../m.gguf")


_names = st.text(alphabet="abcxyz_-.0123456789", min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")
)


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.lists(_names, min_size=1, max_size=3).map("/".join), st.binary(max_size=2000), max_size=8
    )
)
def test_roundtrip_property(
    tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes]
) -> None:
    # drop names that are a prefix directory of another file (a file cannot also be a directory)
    names = sorted(files)
    files = {n: files[n] for n in names if not any(o.startswith(n + "/") for o in names)}
    entries: list[tuple] = []
    seen: set[str] = set()
    for name, data in sorted(files.items()):
        parts = name.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in seen:
                seen.add(d)
                entries.append((d, "dir"))
        entries.append((name, "file", data))
    root = tmp_path_factory.mktemp("rt")
    run(make_tar(entries), root)
    got = {k: v for k, v in tree(root).items() if v is not None}
    assert got == files


_segment = st.text(
    alphabet=st.sampled_from("abcXYZ_-.0123456789éü"), min_size=1, max_size=60
).filter(lambda s: s not in (".", ".."))


@settings(max_examples=30, deadline=None)
@given(
    st.dictionaries(
        st.lists(_segment, min_size=1, max_size=4).map("/".join),
        st.tuples(st.binary(max_size=3000), st.sampled_from([0o644, 0o600, 0o755])),
        min_size=1,
        max_size=6,
    )
)
def test_kit_tar_writer_round_trip(
    tmp_path_factory: pytest.TempPathFactory, files: dict[str, tuple[bytes, int]]
) -> None:
    """What the kit-identical writer produces (USTAR split, PAX for long or non-ASCII names)
    the reader restores byte for byte with the header modes."""
    from kitflow.format.tarwriter import TarWriter

    names = sorted(files)
    files = {n: files[n] for n in names if not any(o.startswith(n + "/") for o in names)}
    buf = io.BytesIO()
    writer = TarWriter(buf)
    made: set[str] = set()
    for name, (data, mode) in sorted(files.items()):
        parts = name.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in made:
                made.add(d)
                writer.add_directory(d, 0o755)
        writer.add_file(name, mode, len(data), io.BytesIO(data))
    writer.close()
    root = tmp_path_factory.mktemp("kw")
    run(buf.getvalue(), root)
    for name, (data, mode) in files.items():
        path = root / name
        assert path.read_bytes() == data
        assert stat.S_IMODE(path.stat().st_mode) == mode & ~_UMASK


_VALID = make_tar(
    [("model", "dir"), ("model/a.bin", "file", b"a" * 700), ("model/b.txt", "file", b"b" * 20)]
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    st.integers(0, len(_VALID)),
)
def test_mutated_archives_fail_cleanly(
    tmp_path_factory: pytest.TempPathFactory, flips: list[tuple[int, int]], cut: int
) -> None:
    """Damaged tar bytes (header fields, checksums, sizes, truncation) either extract inside the
    target or raise a KitflowError; never a traceback, never a write outside the target."""
    data = bytearray(_VALID)
    for index, value in flips:
        data[index] = value
    blob = bytes(data[: max(cut, 1)])
    base = tmp_path_factory.mktemp("fuzz")
    root = base / "root"
    with contextlib.suppress(KitflowError):
        extract_tar(io.BytesIO(blob), root, layer_path="model")
    assert sorted(p.name for p in base.iterdir()) == ["root"]
    leftovers = [p for p in root.iterdir() if p.name.startswith(".kitflow-unpack-")]
    assert leftovers == []
