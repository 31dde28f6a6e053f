"""One contract module per workflow (the `shared.py` convention of temporalio/samples-python).

Each module holds what crosses its workflow's boundary: the request / result / signal / update
dataclasses, the workflow name and its id function, and `StrEnum`s of its states and refusal
codes. The API, the workflow, its activities, the store and the search-attribute values import
these names, so a state or a code is spelled once. A contract module imports nothing with I/O:
workflows import it directly.
"""
