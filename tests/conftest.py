"""Test harness entry: each real component's fixtures live in its own module under tests/harness/."""

pytest_plugins = [
    "tests.harness.synapse",
    "tests.harness.swarm",
    "tests.harness.recipes",
]
