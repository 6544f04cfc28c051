"""Speed measurements (not tests): ``python -m benchmarks [NAME...]``.

Each module here has a ``main()`` that measures and prints its figures.
"""
