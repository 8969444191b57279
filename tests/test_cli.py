from pixnet.cli import main


def test_demo_resolves_the_built_in_sample(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--size-um", "64", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "0.2738 µm/px" in out
    for size in ("002", "008", "016"):
        assert f"synthetic_square_{size}um" in out
    assert (tmp_path / "synthetic_visium_hd" / "synthetic_feature_slice.h5").exists()


def test_bad_input_gives_one_line_reason(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--size-um", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pixnet demo: error: size_um must be >= 16")
