import os
import subprocess
import sys
import time

from benchmarks.serving.servers import scrape, tree_cpu_seconds


def test_scrape_sums_the_sum_and_count_samples_of_the_named_histograms():
    text = "\n".join([
        "# HELP modelops_inference_batch_rows Rows per model run.",
        'modelops_inference_batch_rows_bucket{model_name="m",le="1.0"} 3.0',
        'modelops_inference_batch_rows_count{model_name="m"} 4.0',
        'modelops_inference_batch_rows_sum{model_name="m"} 10.0',
        'modelops_inference_requests_total{endpoint="infer"} 9.0',
    ])
    assert scrape(text, "modelops_inference_batch_") == {"modelops_inference_batch_rows_count": 4.0,
                                                         "modelops_inference_batch_rows_sum": 10.0}


def test_tree_cpu_counts_a_busy_child_of_the_process():
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                              "while time.process_time() - t < 0.3: pass\nimport sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        before = tree_cpu_seconds(os.getpid())
        while tree_cpu_seconds(child.pid) < 0.3:
            time.sleep(0.02)  # the parent must not be what burns the CPU
        assert tree_cpu_seconds(os.getpid()) - before >= 0.2
    finally:
        child.stdin.close()
        child.wait()
