"""The benchmark suite: ``python bench/run.py`` measures the training loop's stages, the speed options and the
conversion baseline on this machine and writes a markdown and a JSON report under docs/benchmarks/."""
