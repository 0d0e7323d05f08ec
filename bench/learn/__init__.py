"""The learning benchmark, one module per job: `run` (the grid), `report`, `control`,
`final`, `coverage` (with the tasks' `coordinates`), sharing `common`; `cli` parses
`python bench/learning.py <job> ...`."""
