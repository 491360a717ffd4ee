"""Tests for npvae.checkpoint: exact round trips, exact resumption, and refusal of bad files.

Bad files are made from a good checkpoint: cut short, overwritten in the middle, or rewritten
with ``np.savez`` after changing, dropping or adding arrays. The object-array test stores an
object whose unpickling would create a directory, so it shows that loading never unpickles.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from npvae import AE, SGD, VAE, Adam
from npvae.checkpoint import FORMAT_VERSION, Checkpoint, CheckpointError, load, load_checkpoint, save
from npvae.datasets import load as load_dataset
from npvae.train import History, fit

X_TRAIN = load_dataset("digits", "train").x[:300]
X_VAL = load_dataset("digits", "test").x[:60]


def trained(model_class, dtype=np.float64, **kwargs):
    """A small model after one epoch, so its parameters differ from those its config rebuilds."""
    model = model_class(64, hidden_dims=(32,), latent_dim=4, seed=2, dtype=dtype, **kwargs)
    fit(model, X_TRAIN, 1, batch_size=100, seed=0)
    return model


def assert_same_parameters(first, second) -> None:
    first_state, second_state = first.state_dict(), second.state_dict()
    assert list(first_state) == list(second_state)
    for name in first_state:
        assert first_state[name].dtype == second_state[name].dtype, name
        assert np.array_equal(first_state[name], second_state[name]), name


def without_time(history: History) -> dict:
    record = history.as_dict()
    del record["seconds"]
    return record


def read_all(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def rewrite(source: Path, target: Path, *, drop=(), keep_contents=False, **replace) -> Path:
    """Copy the checkpoint at source to target with arrays dropped, replaced or added (names with
    '/' via ``**{...}``). ``contents`` is updated to list the new arrays unless ``keep_contents``."""
    arrays = {name: array for name, array in read_all(source).items() if name not in drop}
    arrays.update(replace)
    if not keep_contents and "contents" not in drop:
        arrays["contents"] = np.array([name for name in arrays if name not in ("format_version", "contents")])
    with open(target, "wb") as file:
        np.savez(file, **arrays)
    return target


@pytest.fixture
def full_checkpoint(tmp_path) -> Path:
    model = trained(VAE)
    optimizer = Adam(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(9)
    history = fit(model, X_TRAIN, 1, batch_size=100, optimizer=optimizer, rng=rng, x_val=X_VAL)
    return save(model, tmp_path / "good.npz", optimizer=optimizer, history=history, rng=rng)


# -- round trips ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("model_class", [AE, VAE], ids=["AE", "VAE"])
def test_round_trip_gives_identical_outputs(tmp_path, model_class, dtype):
    model = trained(model_class, dtype=dtype, output="bernoulli", activation="tanh")
    path = save(model, tmp_path / "model.npz")
    loaded = load(path)
    assert type(loaded) is model_class
    assert loaded.config() == model.config()
    assert loaded.dtype == np.dtype(dtype)
    assert_same_parameters(model, loaded)
    x = X_VAL[:20]
    z = np.random.default_rng(1).standard_normal((20, 4)).astype(dtype)
    eps = np.random.default_rng(2).standard_normal((20, 4)).astype(dtype)
    for first, second in zip(model.terms(x, eps=eps), loaded.terms(x, eps=eps)):
        assert np.array_equal(first, second)
    assert np.array_equal(model.decode(z), loaded.decode(z))
    assert np.array_equal(model.reconstruct(x), loaded.reconstruct(x))
    encoded, reencoded = model.encode(x), loaded.encode(x)
    for first, second in zip(encoded if model_class is VAE else [encoded], reencoded if model_class is VAE else [reencoded]):
        assert np.array_equal(first, second)


def test_round_trip_of_the_seed_vae_and_its_beta(tmp_path):
    model = VAE.from_seed(input_dim=64, hidden_dim=32, latent_dim=16, latent_num=2, seed=5, dtype=np.float32)
    model.beta = 4.0
    fit(model, X_TRAIN, 1, batch_size=100)
    loaded = load(save(model, tmp_path / "seed.npz"))
    assert loaded.config() == model.config() and loaded.beta == 4.0
    assert_same_parameters(model, loaded)
    eps = np.zeros((10, 2), dtype=np.float32)
    assert np.array_equal(model.terms(X_VAL[:10], eps=eps).loss, loaded.terms(X_VAL[:10], eps=eps).loss)


def test_round_trip_with_a_gaussian_decoder(tmp_path):
    model = trained(AE, output="gaussian", activation="relu")
    loaded = load(save(model, tmp_path / "g.npz"))
    assert loaded.output == "gaussian"
    assert np.array_equal(model.reconstruct(X_VAL), loaded.reconstruct(X_VAL))


def test_optional_parts_are_none_when_not_saved(tmp_path):
    checkpoint = load_checkpoint(save(trained(AE), tmp_path / "m.npz"))
    assert isinstance(checkpoint, Checkpoint)
    assert (checkpoint.optimizer, checkpoint.history, checkpoint.rng) == (None, None, None)
    assert checkpoint.format_version == FORMAT_VERSION == 1


def test_optimizer_history_and_rng_are_restored(full_checkpoint):
    checkpoint = load_checkpoint(full_checkpoint)
    optimizer = checkpoint.optimizer
    assert type(optimizer) is Adam and optimizer.lr == 2e-3 and optimizer.steps == 3
    assert all(a is b for a, b in zip(optimizer.params, checkpoint.model.parameters()))
    saved = read_all(full_checkpoint)
    for key, value in optimizer.state_dict().items():
        assert np.array_equal(value, saved["optim/" + key]), key
    assert len(checkpoint.history) == 1 and len(checkpoint.history.val_loss) == 1
    assert checkpoint.history.as_dict() == json.loads(str(saved["history"]))
    rng_state = json.loads(str(saved["rng_state"]))
    assert checkpoint.rng.bit_generator.state == rng_state
    expected = np.random.Generator(np.random.PCG64())
    expected.bit_generator.state = rng_state
    assert np.array_equal(checkpoint.rng.random(5), expected.random(5))


def test_sgd_with_nesterov_momentum_is_restored_and_steps_identically(tmp_path):
    model = trained(AE)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    fit(model, X_TRAIN, 1, batch_size=100, optimizer=optimizer)
    checkpoint = load_checkpoint(save(model, tmp_path / "sgd.npz", optimizer=optimizer))
    restored = checkpoint.optimizer
    assert type(restored) is SGD and restored.nesterov and restored.momentum == 0.9
    fit(model, X_TRAIN, 1, batch_size=100, optimizer=optimizer, seed=3)
    fit(checkpoint.model, X_TRAIN, 1, batch_size=100, optimizer=restored, seed=3)
    assert_same_parameters(model, checkpoint.model)


def test_pcg64dxsm_generators_are_restored(tmp_path):
    rng = np.random.Generator(np.random.PCG64DXSM(4))
    rng.random(3)
    restored = load_checkpoint(save(trained(AE), tmp_path / "r.npz", rng=rng)).rng
    assert type(restored.bit_generator) is np.random.PCG64DXSM
    assert np.array_equal(restored.random(4), rng.random(4))


def test_save_writes_exactly_the_given_path_with_only_plain_arrays(tmp_path):
    path = save(trained(VAE), tmp_path / "checkpoint", optimizer=None)
    assert path == tmp_path / "checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    arrays = read_all(path)
    assert all(array.dtype.kind in "iufU" for array in arrays.values())
    assert arrays["format_version"].dtype == np.int64 and arrays["format_version"].shape == ()
    assert str(arrays["model_class"]) == "VAE"


def test_save_overwrites_an_existing_checkpoint(tmp_path):
    path = save(trained(AE), tmp_path / "m.npz")
    second = trained(VAE)
    save(second, path)
    assert_same_parameters(load(path), second)


# -- exact resumption ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model_class", "binarize"), [(VAE, True), (AE, False)], ids=["VAE-binarized", "AE"]
)
def test_resuming_from_a_checkpoint_is_bit_identical_to_an_uninterrupted_run(tmp_path, model_class, binarize):
    path = tmp_path / "epoch1.npz"
    options = {"batch_size": 64, "binarize": binarize, "x_val": X_VAL, "kl_warmup_epochs": 2}
    model = model_class(64, hidden_dims=(32,), latent_dim=4, seed=1, dtype=np.float32)
    optimizer = Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(21)

    def save_after_first_epoch(epoch, history):
        if epoch == 1:
            save(model, path, optimizer=optimizer, history=history, rng=rng)

    uninterrupted = fit(model, X_TRAIN, 2, optimizer=optimizer, rng=rng, callbacks=[save_after_first_epoch], **options)
    checkpoint = load_checkpoint(path)
    assert len(checkpoint.history) == 1
    resumed = fit(checkpoint.model, X_TRAIN, 1, optimizer=checkpoint.optimizer, rng=checkpoint.rng,
                  history=checkpoint.history, **options)
    assert without_time(resumed) == without_time(uninterrupted)
    assert_same_parameters(checkpoint.model, model)
    assert checkpoint.optimizer.steps == optimizer.steps
    assert np.array_equal(checkpoint.optimizer.exp_avg_sq, optimizer.exp_avg_sq)
    assert checkpoint.rng.bit_generator.state == rng.bit_generator.state


# -- refusing bad files ------------------------------------------------------------------------------
def test_load_rejects_truncated_file(full_checkpoint, tmp_path):
    data = full_checkpoint.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{cut}: not a readable npz checkpoint"):
        load_checkpoint(cut)


def test_load_rejects_corrupted_bytes_in_the_middle(full_checkpoint):
    data = bytearray(full_checkpoint.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(byte ^ 0xFF for byte in data[middle : middle + 16])
    full_checkpoint.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=str(full_checkpoint)):
        load(full_checkpoint)


@pytest.mark.parametrize("content", [b"", b"epoch,loss\n1,2.0\n", b"\x93NUMPY\x01\x00"], ids=["empty", "csv", "npy"])
def test_load_rejects_a_file_that_is_not_an_npz(tmp_path, content):
    path = tmp_path / "not.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not an npz checkpoint"):
        load(path)


def test_load_rejects_a_single_npy_array(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(CheckpointError, match="array.npy"):
        load(path)


def test_load_raises_file_not_found_for_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.npz")


def test_load_rejects_a_zip_that_is_not_an_npz(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match=str(path)):
        load(path)


class _MakeDirectoryWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_load_refuses_object_arrays_without_unpickling_them(full_checkpoint, tmp_path):
    marker = tmp_path / "unpickled"
    payload = np.array([_MakeDirectoryWhenUnpickled(marker)], dtype=object)
    path = rewrite(full_checkpoint, tmp_path / "object.npz", model_config=payload)
    with pytest.raises(CheckpointError, match="object.npz"):
        load_checkpoint(path)
    assert not marker.exists()
    with np.load(path, allow_pickle=True) as archive:
        archive["model_config"]
    assert marker.exists(), "the payload did not work, so the test proved nothing"


@pytest.mark.parametrize(("version", "found"), [(np.array(2), "version 2 found"), (np.array(0), "version 0 found"),
                                                (np.array("1"), "0-d integer")])
def test_load_rejects_other_format_versions(full_checkpoint, tmp_path, version, found):
    path = rewrite(full_checkpoint, tmp_path / "v.npz", format_version=version)
    with pytest.raises(CheckpointError, match=found) as caught:
        load(path)
    assert str(path) in str(caught.value)
    if version.dtype.kind == "i":
        assert "reads version 1" in str(caught.value)


@pytest.mark.parametrize(
    ("dropped", "match"),
    [
        ("format_version", "missing arrays \\['format_version'\\]"),
        ("contents", "missing arrays \\['contents'\\]"),
        ("model_config", "missing arrays \\['model_config'\\]"),
        ("model_class", "missing arrays \\['model_class'\\]"),
        ("param/head.bias", "missing \\['head.bias'\\]"),
        ("rng_state", "missing arrays \\['rng_state'\\]"),
        ("optimizer_config", "missing arrays \\['optimizer_config'\\]"),
        ("optim/exp_avg", "missing keys \\['exp_avg'\\]"),
    ],
)
def test_load_rejects_missing_arrays(full_checkpoint, tmp_path, dropped, match):
    path = rewrite(full_checkpoint, tmp_path / "missing.npz", drop=[dropped])
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


@pytest.mark.parametrize("dropped", ["model_config", "param/decoder.0.bias", "history", "optim/steps"])
def test_load_rejects_arrays_missing_from_those_listed_in_contents(full_checkpoint, tmp_path, dropped):
    path = rewrite(full_checkpoint, tmp_path / "missing.npz", drop=[dropped], keep_contents=True)
    with pytest.raises(CheckpointError, match=f"missing arrays \\['{dropped}'\\] listed in contents"):
        load_checkpoint(path)


def test_load_rejects_arrays_not_listed_in_contents(full_checkpoint, tmp_path):
    path = rewrite(full_checkpoint, tmp_path / "extra.npz", keep_contents=True, notes=np.zeros(2))
    with pytest.raises(CheckpointError, match="unlisted arrays \\['notes'\\]"):
        load_checkpoint(path)


def test_load_detects_members_hidden_by_a_damaged_zip_directory(full_checkpoint):
    """A garbled comment length in one central-directory entry makes zipfile swallow the entries
    after it as that entry's comment: the archive then opens, every listed member passes its CRC
    check, and only ``contents`` shows that the rng arrays are gone."""
    data = bytearray(full_checkpoint.read_bytes())
    entry = data.rindex(b"history.npy") - 46  # the central-directory entry: the name's last occurrence
    assert data[entry : entry + 4] == b"PK\x01\x02"
    name_length, extra_length = struct.unpack_from("<HH", data, entry + 28)
    assert data[entry + 46 : entry + 46 + name_length] == b"history.npy"
    end_of_directory = data.rindex(b"PK\x05\x06")
    struct.pack_into("<H", data, entry + 32, end_of_directory - (entry + 46 + name_length + extra_length))
    full_checkpoint.write_bytes(bytes(data))
    with zipfile.ZipFile(full_checkpoint) as archive:
        assert archive.testzip() is None and "rng_state.npy" not in archive.namelist()
    with pytest.raises(CheckpointError, match="missing arrays \\['rng_bit_generator', 'rng_state'\\] listed"):
        load_checkpoint(full_checkpoint)


def test_load_rejects_a_damaged_array_header_that_shifts_the_data(full_checkpoint):
    """An .npy header length cut by 16 still parses, and numpy then reads the array 16 bytes
    early and stops before the member's end, where zipfile would have checked the CRC."""
    data = bytearray(full_checkpoint.read_bytes())
    array_start = data.index(b"\x93NUMPY", data.index(b"optim/exp_avg.npy"))
    (header_length,) = struct.unpack_from("<H", data, array_start + 8)
    struct.pack_into("<H", data, array_start + 8, header_length - 16)
    full_checkpoint.write_bytes(bytes(data))
    with np.load(full_checkpoint, allow_pickle=False) as archive:
        assert archive["optim/exp_avg"].shape == (len(archive["optim/exp_avg_sq"]),)
    with pytest.raises(CheckpointError, match="'optim/exp_avg.npy' is corrupted"):
        load_checkpoint(full_checkpoint)


def test_load_rejects_a_wrong_parameter_shape(full_checkpoint, tmp_path):
    weight = read_all(full_checkpoint)["param/head.weight"]
    path = rewrite(full_checkpoint, tmp_path / "shape.npz", **{"param/head.weight": weight[:, :-1]})
    with pytest.raises(CheckpointError, match=r"head.weight.*expected shape \(32, 8\), got \(32, 7\)"):
        load(path)


def test_load_rejects_unexpected_parameters_and_arrays(full_checkpoint, tmp_path):
    extra = np.zeros(3)
    with pytest.raises(CheckpointError, match="unexpected \\['head.extra'\\]"):
        load(rewrite(full_checkpoint, tmp_path / "p.npz", **{"param/head.extra": extra}))
    with pytest.raises(CheckpointError, match="unexpected arrays \\['notes'\\]"):
        load(rewrite(full_checkpoint, tmp_path / "n.npz", notes=extra))


def test_load_rejects_a_parameter_of_another_dtype(full_checkpoint, tmp_path):
    bias = read_all(full_checkpoint)["param/head.bias"].astype(np.float32)
    with pytest.raises(CheckpointError, match="head.bias: expected dtype float64"):
        load(rewrite(full_checkpoint, tmp_path / "d.npz", **{"param/head.bias": bias}))


@pytest.mark.parametrize(
    ("replace", "match"),
    [
        ({"model_class": np.array("GAN")}, "model_class: expected one of \\['AE', 'CategoricalPrior', 'MADEPrior', 'VAE', 'VQVAE'\\], got 'GAN'"),
        ({"model_class": np.array(["VAE"])}, "model_class: expected a 0-d string"),
        ({"model_config": np.array("{not json")}, "model_config: not valid JSON"),
        ({"model_config": np.array("[1, 2]")}, "model_config: expected a JSON object"),
        ({"model_config": np.array('{"input_dim": 64, "wings": 2}')}, "model_config: cannot build VAE"),
        ({"history": np.array('{"loss": [1.0]}')}, "history: .*missing"),
        ({"history": np.array("nope")}, "history: not valid JSON"),
        ({"optimizer_class": np.array("RMSprop")}, "optimizer_class: expected one of"),
        ({"optimizer_config": np.array('{"lr": -1}')}, "optimizer state does not fit Adam"),
        ({"optim/exp_avg": np.zeros(5)}, "optimizer state does not fit Adam.*exp_avg"),
        ({"optim/exp_avg": np.array("x")}, "optim/exp_avg: expected a numeric array"),
        ({"rng_bit_generator": np.array("MT19937")}, "rng_bit_generator: expected one of"),
        ({"rng_state": np.array('{"bit_generator": "PCG64"}')}, "rng_state: not a valid PCG64 state"),
        ({"rng_state": np.array('{"bit_generator": "SFC64"}')}, "rng_state: expected the state of a PCG64"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_load_rejects_inconsistent_contents(full_checkpoint, tmp_path, replace, match):
    path = rewrite(full_checkpoint, tmp_path / "bad.npz", **replace)
    with pytest.raises(CheckpointError, match=match) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value)


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


# -- atomic saving --------------------------------------------------------------------------------------
def _partial_savez(file, **arrays):
    file.write(b"PK\x03\x04 half a checkpoint")
    raise OSError("disk full")


def _failing_replace(source, target):
    raise OSError("rename failed")


def _interrupting_savez(file, **arrays):
    file.write(b"PK\x03\x04")
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("target", "replacement", "error"),
    [("numpy.savez", _partial_savez, OSError), ("os.replace", _failing_replace, OSError),
     ("numpy.savez", _interrupting_savez, KeyboardInterrupt)],
    ids=["write", "rename", "interrupt"],
)
def test_crash_while_saving_keeps_the_old_checkpoint_and_leaves_no_temp_file(
    full_checkpoint, monkeypatch, target, replacement, error
):
    before = full_checkpoint.read_bytes()
    model = trained(AE)
    monkeypatch.setattr(target, replacement)
    with pytest.raises(error):
        save(model, full_checkpoint)
    monkeypatch.undo()
    assert full_checkpoint.read_bytes() == before
    assert [p.name for p in full_checkpoint.parent.iterdir()] == [full_checkpoint.name]
    assert type(load(full_checkpoint)) is VAE


def test_save_refuses_arrays_that_would_need_pickle(tmp_path, monkeypatch):
    model = AE(64, 8, 2)
    state = model.state_dict()
    state["decoder.0.bias"] = np.array([object()] * 2, dtype=object)
    monkeypatch.setattr(model, "state_dict", lambda: state)
    with pytest.raises(TypeError, match="param/decoder.0.bias: cannot store dtype object"):
        save(model, tmp_path / "c.npz")
    assert list(tmp_path.iterdir()) == []


# -- save's arguments ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"model": "model"}, TypeError, "model"),
        ({"path": 3}, TypeError, "path"),
        ({"optimizer": "adam"}, TypeError, "optimizer"),
        ({"optimizer": Adam(AE(64, 8, 2).parameters())}, ValueError, "optimizer"),
        ({"history": {"loss": []}}, TypeError, "history"),
        ({"rng": 7}, TypeError, "rng"),
        ({"rng": np.random.Generator(np.random.MT19937(0))}, ValueError, "rng.*MT19937"),
    ],
)
def test_save_rejects_bad_arguments_naming_them(tmp_path, arguments, error, match):
    call = {"model": AE(64, 8, 2), "path": tmp_path / "c.npz"}
    call.update(arguments)
    with pytest.raises(error, match=match):
        save(**call)
    assert list(tmp_path.iterdir()) == []


# -- issue 11: hostile files are refused before anything large is read, built or parsed ------------
def _state_with(full_checkpoint: Path, **fields) -> dict:
    state = json.loads(str(read_all(full_checkpoint)["rng_state"]))
    for key, value in fields.items():
        if key in ("state", "inc"):
            state["state"][key] = value
        else:
            state[key] = value
    return state


@pytest.mark.parametrize("fields", [{"state": -1}, {"inc": 2**130}, {"uinteger": -5}, {"has_uint32": 7}],
                         ids=["state-1", "inc-2^130", "uinteger-5", "has_uint32-7"])
def test_an_out_of_range_generator_state_is_a_checkpoint_error_and_training_state_false_skips_it(
        full_checkpoint, tmp_path, fields):
    # before: OverflowError from numpy's PCG64 state setter, also for eval and sample
    state = _state_with(full_checkpoint, **fields)
    path = rewrite(full_checkpoint, tmp_path / "rng.npz", rng_state=np.array(json.dumps(state)))
    with pytest.raises(CheckpointError, match="rng_state: not a valid PCG64 state"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, training_state=False)
    assert loaded.rng is None and loaded.optimizer is None and len(loaded.history) == 1
    assert type(load(path)).__name__ == "VAE"


@pytest.mark.parametrize("member", ["model_config", "history", "optimizer_config"])
def test_deeply_nested_json_is_a_checkpoint_error_not_a_recursion_error(full_checkpoint, tmp_path, member):
    path = rewrite(full_checkpoint, tmp_path / "deep.npz", **{member: np.array("[" * 30_000 + "]" * 30_000)})
    with pytest.raises(CheckpointError, match=f"{member}: JSON nested too deeply"):
        load_checkpoint(path)


def test_a_config_claiming_a_billion_inputs_is_refused_before_anything_is_allocated(full_checkpoint, tmp_path):
    config = json.loads(str(read_all(full_checkpoint)["model_config"]))
    path = rewrite(full_checkpoint, tmp_path / "huge.npz", model_config=np.array(json.dumps({**config, "input_dim": 10**9})))
    with pytest.raises(CheckpointError, match="make 65,000,000,456 parameter entries, but the file stores only"):
        load_checkpoint(path)


def test_a_200000_layer_config_is_refused_at_once_with_a_short_message(full_checkpoint, tmp_path):
    config = json.loads(str(read_all(full_checkpoint)["model_config"]))
    path = rewrite(full_checkpoint, tmp_path / "deep.npz",
                   model_config=np.array(json.dumps({**config, "hidden_dims": [7] * 200_000})))
    with pytest.raises(CheckpointError, match="more than the 65,536 it may hold") as caught:
        load_checkpoint(path)
    assert len(str(caught.value)) < 400
    path = rewrite(full_checkpoint, tmp_path / "many.npz",
                   model_config=np.array(json.dumps({**config, "hidden_dims": [7] * 5000})))
    with pytest.raises(CheckpointError, match="5,000 hidden layers, more than 1,000"):
        load_checkpoint(path)


def test_an_unlisted_member_is_refused_before_it_is_decompressed(full_checkpoint, tmp_path):
    # The extra member's data is garbage: the old loader decompressed (CRC-checked) every member
    # first and so reported it as corrupted; now the zip directory and contents refuse it unread.
    path = tmp_path / "extra.npz"
    path.write_bytes(full_checkpoint.read_bytes())
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("notes.npy", b"\x93NUMPY" + b"x" * 1000)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("notes.npy")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename)
    data[start + 10] ^= 0xFF  # CRC mismatch in the extra member
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"unlisted arrays \['notes'\] .*none of them was read"):
        load_checkpoint(path)


def test_declared_sizes_beyond_the_available_memory_are_refused_before_reading(full_checkpoint, monkeypatch):
    monkeypatch.setattr("npvae.checkpoint.available_memory", lambda: 1000)
    with pytest.raises(CheckpointError, match=r"its arrays declare [0-9.]+ KiB in all, more than the 1000 B"):
        load_checkpoint(full_checkpoint)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_a_fifo_is_not_opened_as_a_checkpoint(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)  # before: open() blocked forever waiting for a writer
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(fifo)
