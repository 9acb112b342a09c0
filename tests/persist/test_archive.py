"""The session archive: bit-identical round trips, and refusal of anything damaged, unlisted or executable."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import pickle
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from onthefly_nb.errors import ArchiveError
from onthefly_nb.persist.archive import FORMAT_VERSION, ArchiveContents, read_archive, write_archive


def trained_adam_state() -> dict[str, Any]:
    """A real Adam state_dict after a few steps on a tiny model."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return optimizer.state_dict()


def rng_states() -> dict[str, Any]:
    """Torch's and numpy's generator states as plain data: tensors, ints, strings."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy_legacy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                         "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "numpy_generator": np.random.default_rng(7).bit_generator.state,  # nested dict of (128-bit) ints
    }


def sample_contents() -> ArchiveContents:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    shared = torch.arange(10, dtype=torch.int64)
    return ArchiveContents(
        tensors={
            "model": {"weight": torch.randn(5, 3), "bf16": torch.randn(7).bfloat16(), "ids": torch.arange(-3, 9),
                      "view": base.t()[1:, ::2], "left": shared[:5], "right": shared[3:], "flag": torch.tensor(True),
                      "nan": torch.tensor([float("nan"), -0.0, float("inf")])},
            "experts/fork1": {"weight": base[2]},
        },
        states={"optimizer": trained_adam_state(), "rng": rng_states(), "scheduler": {"last_epoch": 3, "lr": [0.1]}},
        arrays={"store": {"loss": np.linspace(0, 1, 9, dtype=np.float32), "seen": np.arange(9, dtype=np.int64),
                          "names": np.array(["cat", "dog"])},
                "history": {"rows": np.arange(12.0).reshape(3, 4)}},
        documents={"config": {"lr": 0.01, "plans": ["a", "b"], "none": None}, "lineage": [{"id": 1}, {"id": 2}]},
        events=[{"step": 1, "kind": "pause"}, {"step": 2, "kind": "fork", "text": "é\nü"}],
    )


def assert_same(a: Any, b: Any) -> None:
    """Equal down to the bits of every tensor and array, and the type of every container."""
    if isinstance(a, ArchiveContents):
        for part in ("tensors", "states", "arrays", "documents", "events"):
            assert_same(getattr(a, part), getattr(b, part))
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and (a.dtype, a.shape) == (b.dtype, b.shape)
        assert torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.tobytes() == b.tobytes() and a.shape == b.shape
    elif isinstance(a, dict):
        assert type(b) is dict and list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert type(a) is type(b) and a == b


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def manifest_for(files: dict[str, bytes], **fields: Any) -> bytes:
    """A manifest with correct sizes and checksums for ``files``, other fields overridable."""
    table = {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()}
    manifest = {"format": "onthefly-nb-session", "format_version": FORMAT_VERSION, "created": "2025-01-01T00:00:00",
                "library_versions": {"onthefly_nb": "0.1.0"}, "files": table, **fields}
    return json.dumps(manifest).encode()


def listed_zip(path: Path, files: dict[str, bytes], **fields: Any) -> Path:
    """A zip whose manifest correctly lists ``files``: only what the reader itself checks can refuse it."""
    return write_zip(path, {"manifest.json": manifest_for(files, **fields), **files})


@pytest.fixture(scope="module")
def contents() -> ArchiveContents:
    return sample_contents()


@pytest.fixture
def archive(tmp_path: Path, contents: ArchiveContents) -> Path:
    return write_archive(tmp_path / "run.zip", contents)


def expect_refusal(path: Path, *phrases: str) -> str:
    with pytest.raises(ArchiveError) as caught:
        read_archive(path)
    message = str(caught.value)
    for phrase in phrases:
        assert phrase in message
    return message


# Round trips


@pytest.mark.parametrize("name", ["run.zip", "run"])
def test_round_trip_is_bit_identical(tmp_path: Path, contents: ArchiveContents, name: str) -> None:
    path = write_archive(tmp_path / name, contents)
    assert path.is_file() == name.endswith(".zip")
    assert_same(contents, read_archive(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary files left behind


def test_manifest_lists_every_file_with_size_and_sha256(archive: Path) -> None:
    files = members(archive)
    manifest = json.loads(files.pop("manifest.json"))
    assert (manifest["format"], manifest["format_version"]) == ("onthefly-nb-session", FORMAT_VERSION)
    assert set(manifest["library_versions"]) == {"onthefly_nb", "torch", "numpy", "safetensors", "python"}
    assert "tensors/experts/fork1.safetensors" in files and "states/optimizer.pt" in files
    assert manifest["files"] == {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                                 for name, data in files.items()}


def test_rng_states_restore_the_same_draws(tmp_path: Path) -> None:
    torch.manual_seed(11)
    np.random.seed(11)
    path = write_archive(tmp_path / "rng.zip", ArchiveContents(states={"rng": rng_states()}))
    expected = torch.rand(3), np.random.rand(3), np.random.default_rng(7).random(3)
    torch.rand(5), np.random.rand(5)  # draw on, so only restoring can give the same draws again

    rng = read_archive(path).states["rng"]
    torch.set_rng_state(rng["torch"])
    legacy = rng["numpy_legacy"]
    np.random.set_state((legacy["name"], legacy["keys"].numpy().astype(np.uint32), legacy["pos"],
                         legacy["has_gauss"], legacy["cached_gaussian"]))
    generator = np.random.default_rng()
    generator.bit_generator.state = rng["numpy_generator"]
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and np.array_equal(generator.random(3), expected[2])


def test_empty_contents_round_trip(tmp_path: Path) -> None:
    assert_same(ArchiveContents(), read_archive(write_archive(tmp_path / "empty", ArchiveContents())))


def test_zip_is_replaced_whole(tmp_path: Path, contents: ArchiveContents) -> None:
    path = write_archive(tmp_path / "run.zip", ArchiveContents(documents={"old": 1}))
    write_archive(path, contents)
    assert_same(contents, read_archive(path))


def test_folder_is_replaced_only_with_overwrite(tmp_path: Path, contents: ArchiveContents) -> None:
    path = write_archive(tmp_path / "run", ArchiveContents(documents={"old": 1}))
    with pytest.raises(ArchiveError, match="overwrite=True"):
        write_archive(path, contents)
    assert read_archive(path).documents == {"old": 1}
    write_archive(path, contents, overwrite=True)
    assert_same(contents, read_archive(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# Refusals when writing: nothing is left under the target name


@pytest.mark.parametrize("group", ["../escape", "/etc/model", "a\\b", "a//b", "", "a/./b", "experts/"])
def test_write_refuses_unsafe_names(tmp_path: Path, group: str) -> None:
    with pytest.raises(ArchiveError, match="Unsafe name"):
        write_archive(tmp_path / "run.zip", ArchiveContents(tensors={group: {"w": torch.ones(1)}}))
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_state_torch_load_would_refuse(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="states\\['rng'\\].*tensors, numbers, strings"):
        write_archive(tmp_path / "run.zip", ArchiveContents(states={"rng": np.random.get_state()}))
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_object_arrays(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="arrays\\['store'\\]\\['meta'\\] holds Python objects"):
        write_archive(tmp_path / "run", ArchiveContents(arrays={"store": {"meta": np.array([{}, 1], dtype=object)}}))
    assert list(tmp_path.iterdir()) == []


# Refusals when reading


def test_missing_path(tmp_path: Path) -> None:
    expect_refusal(tmp_path / "nowhere.zip", "No session archive", "check the path")


@pytest.mark.parametrize("keep", [0, 10, 0.5, -1])
def test_truncated_zip(archive: Path, keep: float) -> None:
    data = archive.read_bytes()
    archive.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    # Half an archive can still end in a stored .pt (itself a zip), so either refusal may come first.
    expect_refusal(archive, "truncated", "save the session again")


def test_checksum_mismatch_names_the_file(tmp_path: Path, archive: Path) -> None:
    files = members(archive)
    damaged = bytearray(files["tensors/model.safetensors"])
    damaged[-3] ^= 0x01
    files["tensors/model.safetensors"] = bytes(damaged)
    expect_refusal(write_zip(tmp_path / "damaged.zip", files), "tensors/model.safetensors", "sha256", "damaged")


def test_member_larger_than_listed_is_refused(tmp_path: Path, archive: Path) -> None:
    files = members(archive)
    files["documents/config.json"] += b" " * 1000
    expect_refusal(write_zip(tmp_path / "grown.zip", files), "documents/config.json", "size")


def test_newer_format_version_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = listed_zip(tmp_path / "new.zip", {}, format_version=FORMAT_VERSION + 1,
                      library_versions={"onthefly_nb": "9.3"})
    expect_refusal(path, "newer onthefly-nb 9.3", "upgrade", "pip install -U onthefly-nb")


def test_wrong_format(tmp_path: Path) -> None:
    expect_refusal(listed_zip(tmp_path / "other.zip", {}, format="something-else"), "onthefly-nb-session")


def test_missing_manifest(tmp_path: Path) -> None:
    expect_refusal(write_zip(tmp_path / "bare.zip", {"events.jsonl": b""}), "no manifest.json", "not an onthefly-nb")


def test_missing_member(tmp_path: Path, archive: Path) -> None:
    files = members(archive)
    del files["arrays/store.npz"]
    expect_refusal(write_zip(tmp_path / "short.zip", files), "arrays/store.npz", "missing", "incomplete")


def test_unlisted_entry_in_zip(tmp_path: Path, archive: Path) -> None:
    files = members(archive)
    files["states/extra.pt"] = files["states/scheduler.pt"]
    expect_refusal(write_zip(tmp_path / "extra.zip", files), "does not list", "states/extra.pt")


def test_unlisted_entry_in_folder(tmp_path: Path, contents: ArchiveContents) -> None:
    path = write_archive(tmp_path / "run", contents)
    (path / "documents" / "notes.json").write_text("{}")
    expect_refusal(path, "does not list", "documents/notes.json")


def test_link_in_folder(tmp_path: Path, contents: ArchiveContents) -> None:
    path = write_archive(tmp_path / "run", contents)
    (tmp_path / "secret.json").write_text("{}")
    (path / "documents" / "secret.json").symlink_to(tmp_path / "secret.json")
    expect_refusal(path, "link")


@pytest.mark.parametrize("name", ["../escape.json", "documents/../../escape.json", "/tmp/escape.json",
                                  "documents\\..\\escape.json", "C:/escape.json"])
def test_zip_slip_names(tmp_path: Path, name: str) -> None:
    # Listed with a correct checksum, so only the name check can refuse it.
    expect_refusal(listed_zip(tmp_path / "slip.zip", {name: b"{}"}), "Unsafe name", repr(name))
    assert not (tmp_path.parent / "escape.json").exists()


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 99])
def test_member_with_a_wrong_compression_method(tmp_path: Path, archive: Path, method: int) -> None:
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as opened:
        infos, central = opened.infolist(), opened.start_dir
    for info in infos:  # set the method in the local header and central record of each member but the manifest
        if info.filename != "manifest.json":
            struct.pack_into("<H", data, info.header_offset + 8, method)
            struct.pack_into("<H", data, central + 10, method)
        central += 46 + sum(struct.unpack_from("<HHH", data, central + 28))
    archive.write_bytes(bytes(data))
    expect_refusal(archive, "is compressed, which onthefly-nb never does", "save the session again")


class MakesMarker:
    """Unpickling this creates a folder: code from the file would have run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.makedirs, (str(self.marker),)


def raw_pickle(marker: Path, protocol: int = 2) -> bytes:
    return pickle.dumps({"state": MakesMarker(marker)}, protocol=protocol)


def torch_pickle(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"state": {0: MakesMarker(marker)}, "param_groups": []}, buffer)
    return buffer.getvalue()


def unsafe_torch_load(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), weights_only=False)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(("payload", "unsafe_load", "names_call"), [
    (raw_pickle, pickle.loads, True),
    (functools.partial(raw_pickle, protocol=5), pickle.loads, False),  # refused at its first frame opcode
    (torch_pickle, unsafe_torch_load, True),
])
def test_executable_state_is_not_loaded(tmp_path: Path, payload: Any, unsafe_load: Any, names_call: bool) -> None:
    proof = tmp_path / "proof"  # the same payload does run when unpickled unsafely
    unsafe_load(payload(proof))
    assert proof.is_dir()

    marker = tmp_path / "marker"
    path = listed_zip(tmp_path / "evil.zip", {"states/optimizer.pt": payload(marker)})
    message = expect_refusal(path, "states/optimizer.pt", "executable content", "not loaded")
    assert ("it would call os.makedirs" in message) == names_call
    assert not marker.exists()


def test_object_array_in_npz_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array([{"a": 1}, None], dtype=object))
    path = listed_zip(tmp_path / "objects.zip", {"arrays/store.npz": buffer.getvalue()})
    expect_refusal(path, "arrays/store.npz", "plain-data .npz", "not loaded")


@pytest.mark.parametrize(("name", "data"), [("documents/config.json", b"{oops"), ("events.jsonl", b"{}\nnot json\n"),
                                             ("tensors/model.safetensors", b"\x08" + bytes(15)),
                                             ("notes/readme.txt", b"hello")])
def test_unreadable_or_unknown_listed_files(tmp_path: Path, name: str, data: bytes) -> None:
    expect_refusal(listed_zip(tmp_path / "odd.zip", {name: data}), name)


# Any damage: the original contents or ArchiveError, never another exception


@functools.cache
def valid_zip() -> bytes:
    small = ArchiveContents(
        tensors={"model": {"w": torch.randn(3, 2), "bf": torch.ones(2, dtype=torch.bfloat16)}},
        states={"optimizer": trained_adam_state()},
        arrays={"store": {"loss": np.arange(5, dtype=np.float32)}},
        documents={"config": {"lr": 0.1}},
        events=[{"step": 1}],
    )
    with tempfile.TemporaryDirectory() as folder:
        return write_archive(Path(folder) / "run.zip", small).read_bytes()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_bytes_never_escape_as_other_errors(tmp_path: Path, data: st.DataObject) -> None:
    original = valid_zip()
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] ^= data.draw(st.integers(1, 255))
    path = tmp_path / "damaged.zip"
    path.write_bytes(bytes(damaged))
    (tmp_path / "original.zip").write_bytes(original)
    try:
        result = read_archive(path)
    except ArchiveError:
        return
    assert_same(read_archive(tmp_path / "original.zip"), result)


def npz_member(header: dict[str, Any], body: bytes, compression: int = zipfile.ZIP_STORED) -> bytes:
    """An .npz with one member ``rows.npy``: a version 2.0 header and ``body``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as npz:
        with npz.open("rows.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_2_0(member, header)
            member.write(body)
    return buffer.getvalue()


def test_an_npz_that_inflates_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A bzip2-compressed array inside an .npz member (1 GiB of zeros in a few KB) is refused unread."""
    gib_rows = 2**30 // 88
    bomb = npz_member({"descr": "<f8", "fortran_order": False, "shape": (gib_rows, 11)}, bytes(gib_rows * 88),
                      zipfile.ZIP_BZIP2)
    assert len(bomb) < 64 * 1024
    path = listed_zip(tmp_path / "bomb.zip", {"arrays/history.npz": bomb})
    expect_refusal(path, "arrays/history.npz", "compressed inside the .npz")


def test_an_npz_header_that_claims_more_than_its_bytes_is_refused(tmp_path: Path) -> None:
    liar = npz_member({"descr": "<f8", "fortran_order": False, "shape": (10**9, 11)}, bytes(64))
    path = listed_zip(tmp_path / "liar.zip", {"arrays/history.npz": liar})
    expect_refusal(path, "arrays/history.npz", "claims 88000000000 bytes")


def test_the_package_requires_a_torch_whose_weights_only_holds() -> None:
    """weights_only=True is the guard on .pt states; it can be bypassed below torch 2.6
    (CVE-2025-32434) and 2.10 (CVE-2026-24747)."""
    import tomllib
    from conftest import ROOT
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "torch")
    assert not torch_req.specifier.contains(Version("2.9.1")) and torch_req.specifier.contains(Version("2.10.0"))
    assert Version(torch.__version__.split("+")[0]) >= Version("2.10")
