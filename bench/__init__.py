"""Trinity benchmarks. Each benchmark module (e.g. `bench.fanout`) exposes `main(argv) -> dict`;
`python bench/run.py [names...]` runs them and `bench/results.json` collects their figures."""
