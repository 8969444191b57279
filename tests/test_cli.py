import pytest
import spatialdata

import pixnet
from pixnet.cli import main

TINY = [
    "--preset",
    "paper",
    "--encoder-weights",
    "random",
    "--decoder-width",
    "16",
    "--patch-size",
    "64",
    "--n-genes",
    "6",
    "--epochs",
    "1",
    "--batch-size",
    "4",
]


def test_demo_writes_store_figures_and_metrics(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--size-um", "96", "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "measured 2 µm counts" in out and "noise-free 2 µm truth" in out and "pcc_m" in out
    for name in ("predicted_vs_measured.png", "pcc_per_gene.png", "training_curves.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    sdata = spatialdata.read_zarr(tmp_path / "pixnet_demo.zarr")
    assert "pixnet_map" in sdata.images and "pixnet_synthetic_square_002um" in sdata.tables
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_train_predict_evaluate_on_a_space_ranger_folder(hd_folder, tmp_path, capsys):
    model, store = tmp_path / "model", tmp_path / "sample.zarr"
    assert main(["train", str(hd_folder), "--shapes", "bins_8um", "--out", str(model), "-q", *TINY]) == 0
    assert "saved to" in capsys.readouterr().out
    assert main(["predict", str(hd_folder), "--model", str(model), "--shapes", "bins_8um", "--out", str(store)]) == 0
    assert "pixnet_synthetic_square_008um" in capsys.readouterr().out
    sdata = spatialdata.read_zarr(store)
    assert sdata.images["pixnet_map"].sizes["c"] == 6
    csv = tmp_path / "summary.csv"
    args = ["evaluate", str(store), "--predicted", "pixnet_synthetic_square_008um", "--out", str(csv)]
    assert main(args) == 0
    assert "pcc_m" in capsys.readouterr().out and csv.is_file()
    # predicting again into the store itself needs --overwrite
    assert main(["predict", str(store), "--model", str(model), "--shapes", "bins_8um", "-q"]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_a_visium_space_ranger_folder_goes_through_train_predict_evaluate(tmp_path, capsys):
    # a Visium v1 folder as many public ones are: filtered_feature_bc_matrix.h5, spatial/ with
    # tissue_positions_list.csv (no header), hires and lowres PNGs and scalefactors without microns_per_pixel, and
    # no full-resolution image; neither pixel size nor spot size is given
    folder = pixnet.datasets.synthetic_visium(
        tmp_path / "visium", size_um=800, n_genes=12, seed=4, space_ranger=1, fullres_image=False
    )
    model, store = tmp_path / "model", tmp_path / "visium.zarr"
    train = ["train", str(folder), "--out", str(model), "-q", *TINY, "--microns-per-pixel", "2", "--reliability"]
    assert main(train) == 0
    assert "Trained PixNet(6 genes, 2 µm/px" in capsys.readouterr().out
    predict = ["predict", str(folder), "--model", str(model), "--shapes", "visium", "--out", str(store), "-q"]
    assert main([*predict, "--interval", "0.9"]) == 0
    assert "pixnet_visium" in capsys.readouterr().out
    assert main(["evaluate", str(store), "--predicted", "pixnet_visium"]) == 0
    summary = capsys.readouterr().out
    assert "pcc_m" in summary and "nan" not in summary.split("\n")[1] and "interval_coverage" in summary


def test_image2gene_from_the_command_line(hd_folder, tmp_path, capsys):
    model, store = tmp_path / "i2g", tmp_path / "sample.zarr"
    args = ["train", str(hd_folder), "--method", "image2gene", "--shapes", "bins_16um", "--out", str(model), "-q"]
    args += ["--preset", "paper", "--encoder-weights", "random", "--n-genes", "6", "--epochs", "1"]
    assert main([*args, "--patch-size", "32", "--microns-per-pixel", "2"]) == 0
    assert "Image2Gene(6 genes" in capsys.readouterr().out
    args = ["predict", str(hd_folder), "--model", str(model), "--shapes", "bins_16um", "--out", str(store), "-q"]
    assert main([*args, "--key-added", "i2g"]) == 0
    sdata = spatialdata.read_zarr(store)
    assert sdata.images["i2g_map"].sizes["c"] == 6 and "i2g_synthetic_square_016um" in sdata.tables


def test_bad_input_gives_one_line_reason(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--size-um", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pixnet demo: error: size_um must be >= 16")

    (tmp_path / "empty").mkdir()
    assert main(["train", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a SpatialData zarr store, a Space Ranger" in err[0]

    assert main(["predict", str(tmp_path / "missing"), "--model", str(tmp_path / "m")]) == 2
    assert "is not a saved pixnet model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option",
    [
        ["--epochs", "-1", "epochs must be a finite number >= 0, got -1"],
        ["--epochs", "1.5", "invalid literal for int"],
        ["--batch-size", "0", "batch_size must be a finite number > 0, got 0"],
        ["--decoder-width", "0", "decoder_width must be a finite number > 0, got 0"],
        ["--microns-per-pixel", "0", "microns_per_pixel must be a finite number > 0, got 0.0"],
        ["--learning-rate", "nan", "learning_rate must be a finite number > 0, got nan"],
        ["--patch-size", "16", "patch_size must be at least 32 pixels, got 16"],
        ["--output-stride", "3", "expected one of 1, 2, 4, got '3'"],
        ["--n-genes", "x", "expected a positive integer, got 'x'"],
    ],
)
def test_numbers_are_checked_before_anything_runs(tmp_path, option, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(tmp_path), "--out", str(tmp_path / "m"), *option[:2]])
    assert exit_.value.code == 2
    assert f"argument {option[0]}: {option[2]}" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_failed_predict_leaves_no_store_and_ctrl_c_is_one_line(hd_folder, tmp_path, capsys, monkeypatch):
    model, store = tmp_path / "model", tmp_path / "new.zarr"
    assert main(["train", str(hd_folder), "--shapes", "bins_8um", "--out", str(model), "-q", *TINY]) == 0
    capsys.readouterr()
    args = ["predict", str(hd_folder), "--model", str(model), "--out", str(store), "-q"]
    assert main([*args, "--shapes", "bins_8mu"]) == 2  # a typo
    assert "bins_8mu" in capsys.readouterr().err and not store.exists()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pixnet.tl, "predict", interrupted)
    assert main([*args, "--shapes", "bins_8um"]) == 130
    assert capsys.readouterr().err.strip() == "pixnet predict: interrupted" and not store.exists()

    def diverged(*args, **kwargs):
        raise FloatingPointError("The loss became nan")

    monkeypatch.setattr(pixnet.tl, "predict", diverged)  # any error type: one line, the traceback with --verbose
    assert main([*args, "--shapes", "bins_8um"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "pixnet predict: error: FloatingPointError: The loss became nan (run again with --verbose for the traceback)"
    ]
    with pytest.raises(FloatingPointError):
        main([*args, "--shapes", "bins_8um", "--verbose"])


def test_overwrite_never_replaces_a_folder_that_is_not_a_model(hd_folder, tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "notes.txt").write_text("mine")
    assert main(["train", str(hd_folder), "--out", str(results), "--overwrite", "-q", *TINY]) == 2
    assert "is not a pixnet model folder" in capsys.readouterr().err
    assert [p.name for p in results.iterdir()] == ["notes.txt"]


def test_train_checkpoints_and_resumes_from_the_command_line(hd_folder, tmp_path, capsys):
    checkpoints = tmp_path / "checkpoints"
    args = ["train", str(hd_folder), "--shapes", "bins_8um", "-q", *TINY, "--checkpoint-dir", str(checkpoints)]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert (checkpoints / "last" / "trainer_state.pt").is_file()
    resumed = [*args, "--epochs", "2", "--resume", str(checkpoints), "--out", str(tmp_path / "b")]  # the last wins
    assert main(resumed) == 0
    assert pixnet.models.load_model(tmp_path / "b").epochs_trained == 2


def test_zero_epochs_saves_an_untrained_model_and_says_so(hd_folder, tmp_path, capsys):
    out = tmp_path / "model"  # the last --epochs wins
    assert main(["train", str(hd_folder), "--shapes", "bins_8um", "--out", str(out), "-q", *TINY, "--epochs", "0"]) == 0
    assert "untrained (no epochs)" in capsys.readouterr().out and (out / "config.json").is_file()
