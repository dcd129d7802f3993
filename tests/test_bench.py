from awp_lib import bench


def test_epoch_speed_reports_a_ratio_and_a_projection():
    out = bench.run(["epoch_speed"], device="cpu", quick=True)["epoch_speed"]
    assert out["ratio"] > 0 and out["a_s"] > 0 and out["b_s"] > 0
    assert out["model"] == "smallcnn" and out["projected_epoch_s"] == round(383 * out["b_s"], 1)
