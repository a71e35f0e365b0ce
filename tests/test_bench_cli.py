"""`tf-adam-op bench` end to end on tiny workloads: the table, the JSON and the PNG it writes.
Timings are not asserted (shared machines are noisy); the structure and the ratios' consistency are."""

import json
import os
import subprocess
import sys


def test_bench_writes_table_json_and_png(tmp_path):
  json_path, png_path = tmp_path / "bench.json", tmp_path / "bench.png"
  result = subprocess.run(
      [sys.executable, "-m", "tf_adam_op", "bench", "--workload", "many", "sparse", "--mode",
       "eager", "tf1-resource", "--impl", "stock", "ours", "ours lazy", "--steps", "2",
       "--scale", "0.01", "--json", str(json_path), "--png", str(png_path), "--quiet"],
      cwd=tmp_path, capture_output=True, text=True, timeout=600,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert result.returncode == 0, result.stderr[-3000:]
  assert "targets (issue 4):" in result.stdout
  document = json.loads(json_path.read_text())
  cases = {(c["workload"], c["mode"]): c for c in document["cases"]}
  assert set(cases) == {(w, m) for w in ("many", "sparse") for m in ("eager", "tf1-resource")}
  for (workload, _), case in cases.items():
    rows = {r["implementation"]: r for r in case["records"]}
    expected = {"stock", "ours"} | ({"ours lazy"} if workload == "sparse" else set())
    assert set(rows) == expected
    for row in rows.values():
      assert row["median_ms"] > 0 and row["steps"] == 2
      assert abs(row["speedup_vs_stock"] - rows["stock"]["median_ms"] / row["median_ms"]) < 1e-9
    if workload == "many":
      assert case["probe_gbs"] > 0 and 0 < rows["ours"]["bandwidth_fraction"]
    else:
      assert case["probe_gbs"] is None and rows["ours"]["bandwidth_fraction"] is None
  statuses = {t["status"] for t in document["targets"]}
  assert statuses <= {"met", "NOT met", "not measured"}
  assert document["machine"]["tensorflow"]
  assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
