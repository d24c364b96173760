"""The benchmark suite (issue #5): ``python bench/run.py`` measures every stage of the training loop and the
conversion baseline on this machine and writes a markdown and a JSON report under docs/benchmarks/."""
