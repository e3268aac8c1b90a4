"""Development tooling: the demo, a sample member, the CRD and field-reference generators, and
real llama.cpp engines with a tiny model for tests and benchmarks.

Nothing at run time imports it; the image carries it for demos and tests (the sample member).
"""
