"""hrinpaint_jax/training_record.py: totals over legs (accelerator device-seconds, unrecorded legs),
merging inherited legs, the Markdown table."""

from hrinpaint_jax import training_record as tr


def leg(task, start, end, seconds, platform="cpu", devices=1, device=None):
    return {"run": task, "task": task, "start_step": start, "end_step": end, "seconds": seconds,
            "platform": platform, "device": device or platform, "device_count": devices}  # fmt: skip


def test_totals_count_device_seconds_on_accelerators_only():
    legs = [
        leg("dfnet", 0, 100, 600.0),
        leg("dfnet", 100, 400, 20.0, platform="gpu", devices=8, device="NVIDIA H200"),
        leg("zoom_joint", 0, 50, 30.0, platform="tpu", devices=4, device="TPU v5e"),
    ]
    t = tr.totals(legs)
    assert list(t) == ["dfnet", "zoom_joint", "all"]
    assert t["dfnet"] == {"updates": 400, "accelerator_updates": 300, "seconds": 620.0,
                          "accelerator_seconds": 160.0, "devices": ["cpu", "NVIDIA H200"]}  # fmt: skip
    assert t["all"]["accelerator_seconds"] == 280.0 and t["all"]["updates"] == 450
    table = tr.table({"training": tr.metadata(legs)})
    assert "| dfnet | 400 | 300 | 0.17 | 2.7 | cpu, NVIDIA H200 |" in table
    assert table.splitlines()[-1].startswith("| all | 450 | 350 |")


def test_unrecorded_legs_count_updates_but_no_time_and_merge_keeps_one_copy():
    class Config:
        task = "dfnet"

    old = tr.unrecorded(Config(), "/runs/dfnet", 500)
    t = tr.totals([old, leg("dfnet", 500, 600, 60.0)])["dfnet"]
    assert (t["updates"], t["accelerator_updates"], t["seconds"]) == (600, 0, 60.0)
    assert t["devices"] == ["unrecorded", "cpu"]
    a, b = leg("dfnet", 0, 10, 1.0), leg("zoom_joint", 0, 5, 2.0)
    assert tr.merge([a, b], [b], [a]) == [a, b]
    assert tr.table({"model": "dfnet"}) == "" and tr.legs_of_metadata({}) == []
    # one task: its 'all' row would repeat it, so the table leaves it out
    assert "| all |" not in tr.table({"training": tr.metadata([a])})
