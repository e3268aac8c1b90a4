"""Development tooling: the demo, a sample member, and the CRD and field-reference generators.

Nothing at run time imports it; the image carries it for demos and tests (the sample member).
"""
